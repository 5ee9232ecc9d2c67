"""Closed-loop load generator, CPU accounting across processes, and the types a benchmark mode plugs in.

A *mode* (engine-floor, saga, direct) is one async callable ``operation(user_index) -> None`` that does
one complete unit of work (one checkout, one no-op workflow) and raises on failure. ``run_load`` runs
N virtual users (asyncio tasks), each calling the operation again as soon as its previous call
returned (closed loop), for a duration or a fixed count, after a warm-up that is left out of every
figure.

What is measured (duration mode): the operations that *complete* inside the window
[end of warm-up, deadline]. Throughput is their number divided by the window length, latency the
wall time of each of them. Nobody starts an operation after the deadline; calls still running then
are awaited (bounded by the per-operation timeout) so the system is quiet for the next mode, but are
not counted. Count mode: after the warm-up each operation takes a ticket until ``count`` are taken;
exactly those are measured and the window ends with the last of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

Operation = Callable[[int], Awaitable[None]]
"""One unit of work for virtual user ``user_index``; returns when done, raises on failure."""

MESSAGE_LIMIT = 300  # characters kept of one error description


# --------------------------------------------------------------------------------------------------
# Errors


def describe_exception(exc: BaseException, depth: int = 3) -> str:
    """``Type: message`` of an exception and of up to ``depth`` causes (Temporal's ``.cause`` chain
    first, else ``__cause__``), bounded to MESSAGE_LIMIT characters."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < depth:
        kind = type(current).__name__
        app_type = getattr(current, "type", None)
        if isinstance(app_type, str) and app_type:
            kind = f"{kind}[{app_type}]"
        message = str(current).strip()
        parts.append(f"{kind}: {message}" if message else kind)
        nxt = getattr(current, "cause", None)
        current = nxt if isinstance(nxt, BaseException) else current.__cause__
    text = " <- ".join(parts)
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


@dataclass
class ErrorLog:
    """Error counts by exception type and up to ``max_samples`` distinct descriptions with counts."""

    max_samples: int = 20
    total: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    samples: dict[str, int] = field(default_factory=dict)
    dropped_samples: int = 0

    def record(self, exc: BaseException) -> None:
        self.total += 1
        self.by_type[type(exc).__name__] += 1
        text = describe_exception(exc)
        if text in self.samples:
            self.samples[text] += 1
        elif len(self.samples) < self.max_samples:
            self.samples[text] = 1
        else:
            self.dropped_samples += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_type": dict(self.by_type.most_common()),
            "samples": [{"error": text, "count": n} for text, n in self.samples.items()],
            "samples_dropped": self.dropped_samples,
        }


# --------------------------------------------------------------------------------------------------
# CPU accounting


@dataclass(frozen=True)
class ProcessSource:
    """A labelled set of processes whose CPU time counts, resolved again at every sample (so that
    processes started during the window, e.g. new PostgreSQL backends, are counted too)."""

    label: str
    resolve: Callable[[], Iterable[psutil.Process]]


def own_process_source(label: str = "bench") -> ProcessSource:
    me = psutil.Process()
    return ProcessSource(label, lambda: [me])


def pid_source(label: str, pids: Sequence[int], *, children: bool = False) -> ProcessSource:
    """Fixed processes by id (e.g. worker processes), optionally with all their descendants."""
    procs: list[psutil.Process] = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(pid))

    def resolve() -> list[psutil.Process]:
        found = [p for p in procs if p.is_running()]
        if children:
            for proc in list(found):
                with contextlib.suppress(psutil.Error):
                    found += proc.children(recursive=True)
        return found

    return ProcessSource(label, resolve)


def process_listening_on(port: int) -> psutil.Process | None:
    """The process with a TCP socket listening on ``port`` (any address), if this user may see it."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            with contextlib.suppress(psutil.Error):
                return psutil.Process(conn.pid)
    return None


def listening_source(label: str, port: int, *, children: bool = True) -> ProcessSource:
    """The server listening on ``port`` (looked up once, by socket) and, by default, its children:
    the Temporal dev server, or a PostgreSQL postmaster with every backend it forks."""
    found: list[psutil.Process] = []

    def resolve() -> list[psutil.Process]:
        if not found or not found[0].is_running():
            found[:] = [p] if (p := process_listening_on(port)) is not None else []
        procs = list(found)
        if children:
            for proc in found:
                with contextlib.suppress(psutil.Error):
                    procs += proc.children(recursive=True)
        return procs

    return ProcessSource(label, resolve)


def postgres_source(port: int, label: str = "postgres") -> ProcessSource:
    """The PostgreSQL server on ``port``: its postmaster (by listening socket, else by name and
    ``-p <port>`` on its command line) and all its children (backends, writers)."""
    by_socket = listening_source(label, port)

    def resolve() -> list[psutil.Process]:
        procs = list(by_socket.resolve())
        if procs:
            return procs
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmd = proc.info.get("cmdline") or []
            if proc.info.get("name") == "postgres" and "-p" in cmd and str(port) in cmd:
                with contextlib.suppress(psutil.Error):
                    return [proc, *proc.children(recursive=True)]
        return []

    return ProcessSource(label, resolve)


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


@dataclass
class _Tracked:
    label: str
    baseline: float
    last: float


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds (user + system) consumed during a window, in total and by source label."""

    wall_s: float
    total_s: float
    by_label: dict[str, float]
    processes: int
    machine_busy_s: float | None = None  # every process on the machine (non-idle CPU time)

    def to_dict(self) -> dict[str, Any]:
        others = None if self.machine_busy_s is None else max(0.0, self.machine_busy_s - self.total_s)
        return {
            "wall_s": self.wall_s,
            "cpu_s": self.total_s,
            "cores_busy": self.total_s / self.wall_s if self.wall_s > 0 else None,
            "by_process": dict(sorted(self.by_label.items())),
            "processes": self.processes,
            # CPU used meanwhile by processes outside the benchmark: the noise of a shared machine
            "machine_cores": psutil.cpu_count(),
            "others_cores_busy": others / self.wall_s if others is not None and self.wall_s > 0 else None,
        }


def _machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    busy = ("user", "nice", "system", "irq", "softirq")  # guest time is already inside user/nice
    return float(sum(getattr(times, name, 0.0) for name in busy))


class CpuMeter:
    """Sums the CPU time of the processes of several sources between ``start()`` and ``stop()``.

    Processes are sampled every ``interval_s`` so that the CPU of a process that exits during the
    window is counted up to its last sample; a process born during the window counts from zero."""

    def __init__(self, sources: Sequence[ProcessSource], *, interval_s: float = 1.0) -> None:
        self.sources = list(sources)
        self.interval_s = interval_s
        self._tracked: dict[tuple[int, float], _Tracked] = {}
        self._started_wall = 0.0
        self._started_mono = 0.0
        self._machine_at_start = 0.0
        self._sampler: asyncio.Task[None] | None = None

    def _sample(self, *, first: bool) -> None:
        for source in self.sources:
            try:
                procs = list(source.resolve())
            except psutil.Error:
                continue
            for proc in procs:
                try:
                    key = (proc.pid, proc.create_time())
                    seconds = _cpu_seconds(proc)
                except psutil.Error:
                    continue
                tracked = self._tracked.get(key)
                if tracked is None:
                    born_during = not first and key[1] >= self._started_wall
                    self._tracked[key] = _Tracked(source.label, 0.0 if born_during else seconds, seconds)
                else:
                    tracked.last = seconds

    async def start(self) -> None:
        self._tracked.clear()
        self._started_wall = time.time()
        self._started_mono = time.monotonic()
        self._machine_at_start = _machine_busy_seconds()
        await asyncio.to_thread(self._sample, first=True)
        self._sampler = asyncio.create_task(self._sample_forever())

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await asyncio.to_thread(self._sample, first=False)

    async def close(self) -> None:
        """Stop sampling (idempotent); ``stop()`` does this too."""
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None

    async def stop(self) -> CpuUsage:
        wall = time.monotonic() - self._started_mono
        machine = _machine_busy_seconds() - self._machine_at_start
        await self.close()
        await asyncio.to_thread(self._sample, first=False)
        by_label: dict[str, float] = {}
        for tracked in self._tracked.values():
            by_label[tracked.label] = by_label.get(tracked.label, 0.0) + max(
                0.0, tracked.last - tracked.baseline
            )
        return CpuUsage(wall, math.fsum(by_label.values()), by_label, len(self._tracked), machine)


# --------------------------------------------------------------------------------------------------
# The load generator


@dataclass(frozen=True)
class LoadConfig:
    concurrency: int
    duration_s: float | None = None  # measured window length (duration mode) ...
    count: int | None = None  # ... or the number of measured operations (count mode)
    warmup_s: float = 0.0
    op_timeout_s: float = 60.0  # one operation longer than this fails with TimeoutError
    max_error_samples: int = 20

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if (self.duration_s is None) == (self.count is None):
            raise ValueError("give exactly one of duration_s and count")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration_s must be positive")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1")
        if self.warmup_s < 0 or self.op_timeout_s <= 0:
            raise ValueError("warmup_s must be >= 0 and op_timeout_s > 0")


@dataclass
class LoadResult:
    """What one load run measured. Times are ``time.monotonic()`` values; offsets are seconds."""

    label: str
    config: LoadConfig
    window_start: float
    window_end: float
    latencies_s: list[float]  # successful measured operations, in completion order
    timeline: list[tuple[float, float]]  # (completion offset from window start, latency s), same ops
    errors: ErrorLog  # measured operations that failed
    unmeasured_ops: int  # completed during warm-up or after the deadline
    unmeasured_errors: ErrorLog  # failures during warm-up or after the deadline
    abandoned: int  # still running when the drain timeout ran out (cancelled)
    cpu: CpuUsage | None = None

    @property
    def window_s(self) -> float:
        return max(0.0, self.window_end - self.window_start)

    @property
    def completed(self) -> int:
        return len(self.latencies_s)


def _interactive() -> bool:
    return sys.stdout.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


async def run_load(
    operation: Operation,
    config: LoadConfig,
    *,
    label: str = "load",
    cpu_meter: CpuMeter | None = None,
    progress: bool | None = None,
) -> LoadResult:
    """Run ``config.concurrency`` virtual users against ``operation`` (see the module docstring).

    ``progress=None`` shows a live bar only when stdout is a terminal and CI is not set."""
    clock = time.monotonic
    t0 = clock()
    warm_end = t0 + config.warmup_s
    deadline = warm_end + config.duration_s if config.duration_s is not None else math.inf
    count_mode = config.count is not None
    tickets = config.count or 0

    latencies: list[float] = []
    ends: list[float] = []
    errors = ErrorLog(config.max_error_samples)
    unmeasured_errors = ErrorLog(config.max_error_samples)
    unmeasured_ops = 0
    last_ticket_end = warm_end

    def record(start: float, end: float, exc: BaseException | None, ticketed: bool) -> None:
        nonlocal unmeasured_ops, last_ticket_end
        measured = ticketed if count_mode else warm_end <= end <= deadline
        if not measured:
            unmeasured_ops += 1
            if exc is not None:
                unmeasured_errors.record(exc)
            return
        last_ticket_end = max(last_ticket_end, end)
        if exc is None:
            latencies.append(end - start)
            ends.append(end)
        else:
            errors.record(exc)

    async def user(index: int) -> None:
        nonlocal tickets
        if config.warmup_s > 0:  # spread the first calls over part of the warm-up
            await asyncio.sleep(min(1.0, config.warmup_s / 2) * index / config.concurrency)
        while True:
            start = clock()
            if start >= deadline:
                return
            ticketed = False
            if count_mode and start >= warm_end:
                if tickets <= 0:
                    return
                tickets -= 1
                ticketed = True
            failure: BaseException | None = None
            scope = asyncio.timeout(config.op_timeout_s)
            try:
                async with scope:
                    await operation(index)
            except asyncio.CancelledError as exc:
                me = asyncio.current_task()
                if me is None or me.cancelling():
                    raise  # the harness stops this user
                failure = exc  # the operation cancelled something of its own
            except TimeoutError as exc:
                failure = (
                    TimeoutError(f"operation exceeded {config.op_timeout_s} s") if scope.expired() else exc
                )
            except Exception as exc:
                failure = exc
            record(start, clock(), failure, ticketed)

    async def window_cpu() -> None:
        if cpu_meter is None:
            return
        await asyncio.sleep(max(0.0, warm_end - clock()))
        await cpu_meter.start()

    show = _interactive() if progress is None else progress
    cpu_task = asyncio.create_task(window_cpu())
    users = [asyncio.create_task(user(i), name=f"{label}-user-{i}") for i in range(config.concurrency)]
    cpu: CpuUsage | None = None
    pending: set[asyncio.Task[None]] = set()
    async with _progress(show, label, config, t0, lambda: (len(latencies), errors.total)):
        try:
            if config.duration_s is not None:
                await asyncio.wait(users, timeout=max(0.0, deadline - clock()))
                await cpu_task
                if cpu_meter is not None:
                    cpu = await cpu_meter.stop()
                # drain: nobody starts new work now; running calls end within their own timeout
                _done, pending = await asyncio.wait(users, timeout=config.op_timeout_s + 5)
            else:
                await asyncio.wait(users)
                await cpu_task
                if cpu_meter is not None:
                    cpu = await cpu_meter.stop()
        finally:
            for task in [*users, cpu_task]:
                task.cancel()
            await asyncio.gather(*users, cpu_task, return_exceptions=True)
            if cpu_meter is not None and cpu is None:
                await cpu_meter.close()
    for task in users:  # a bug in the harness itself must not pass silently
        if not task.cancelled() and (bug := task.exception()) is not None:
            raise bug
    window_end = deadline if config.duration_s is not None else last_ticket_end
    timeline = [(end - warm_end, lat) for end, lat in zip(ends, latencies, strict=True)]
    return LoadResult(
        label=label,
        config=config,
        window_start=warm_end,
        window_end=window_end,
        latencies_s=latencies,
        timeline=timeline,
        errors=errors,
        unmeasured_ops=unmeasured_ops,
        unmeasured_errors=unmeasured_errors,
        abandoned=len(pending),
        cpu=cpu,
    )


@contextlib.asynccontextmanager
async def _progress(
    show: bool, label: str, config: LoadConfig, t0: float, figures: Callable[[], tuple[int, int]]
) -> AsyncIterator[None]:
    """A live rich progress bar (time-based in duration mode, count-based in count mode)."""
    if not show:
        yield
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        total = (config.warmup_s + config.duration_s) if config.duration_s is not None else config.count
        task = bar.add_task(label, total=total, status="")

        async def tick() -> None:
            while True:
                now = time.monotonic()
                done, failed = figures()
                in_window = now - t0 - config.warmup_s
                phase = "warm-up" if in_window < 0 else "measuring"
                if config.duration_s is not None and in_window > config.duration_s:
                    phase, in_window = "draining", config.duration_s
                rate = done / in_window if in_window > 0 else 0.0
                completed = (now - t0) if config.duration_s is not None else done + failed
                bar.update(
                    task,
                    completed=min(completed, total or 0),
                    status=f"{phase}: {done} ok, {failed} errors, {rate:.1f}/s",
                )
                await asyncio.sleep(0.25)

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker


# --------------------------------------------------------------------------------------------------
# What a mode plugs in


def require_loopback(address: str) -> str:
    """Refuse load against anything but this machine (``host:port`` or a URL's host)."""
    host = address
    if "://" in host:
        host = host.split("://", 1)[1].split("/", 1)[0]
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if host != "localhost":
        try:
            if ipaddress.ip_address(host).is_loopback:
                return address
        except ValueError:
            pass
        raise ValueError(f"the benchmark only sends traffic to this machine (127.0.0.1), not to {address!r}")
    return address


@dataclass
class WorkflowIdLog:
    """Workflow ids of finished operations with their completion time, for history sampling."""

    entries: list[tuple[float, str]] = field(default_factory=list)

    def add(self, workflow_id: str) -> None:
        self.entries.append((time.monotonic(), workflow_id))

    def sample(self, start: float, end: float, limit: int) -> list[str]:
        """Up to ``limit`` ids completed inside [start, end], evenly spread over the window."""
        inside = [wid for at, wid in self.entries if start <= at <= end]
        if len(inside) <= limit:
            return inside
        step = len(inside) / limit
        return [inside[int(i * step)] for i in range(limit)]


@dataclass
class TemporalTarget:
    """The Temporal server of the run: its address, a connected client, its processes (for CPU)."""

    address: str
    namespace: str
    client: Any  # temporalio.client.Client (typed loosely: this module does not import temporalio)
    processes: ProcessSource | None = None


@dataclass
class ModeContext:
    """What every mode factory receives."""

    run_id: str  # unique per benchmark run: prefix of task queues and workflow ids
    settings: Any  # core.settings.Settings of the run; temporal_address is the run's server
    options: Any  # the parsed command line (argparse.Namespace)
    work_dir: Path  # for logs and throw-away files of the mode
    temporal: TemporalTarget | None = None  # present when the mode's spec says needs_temporal


@dataclass
class Mode:
    """A prepared benchmark mode: the one async callable plus what to account and record.

    ``operation(user_index)`` performs one complete unit of work. ``cpu_sources`` are the processes
    the mode's work runs in besides the benchmark process (servers, workers, PostgreSQL).
    ``workflow_ids``: when the operation runs workflows it calls ``workflow_ids.add(id)`` after each
    success, and the runner samples their histories for schedule-to-start latency. ``config`` is
    recorded in the report as is (worker concurrency settings, pool sizes, ...)."""

    operation: Operation
    cpu_sources: list[ProcessSource] = field(default_factory=list)
    workflow_ids: WorkflowIdLog | None = None
    config: dict[str, Any] = field(default_factory=dict)


ModeFactory = Callable[[ModeContext], AbstractAsyncContextManager[Mode]]
"""Prepares a mode (starts workers, loads data), yields it, tears it down."""
