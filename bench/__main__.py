"""Checkout benchmark: the saga against the same work done directly and against Temporal's own floor.

    python -m bench --modes engine-floor,direct,saga --concurrency 20 --duration 300 --warmup 10

Modes run one after another on the same machine, each with its own warm-up. Without
``--temporal-address`` a Temporal dev server (the project's CLI build, file-backed SQLite like
``make up``) is started for the run and shared by every mode. The saga and direct modes also get a
throw-away platform for the run (bench.platform: PostgreSQL, workers, API, sandboxes, demo data),
stopped with everything else at the end, on Ctrl-C and on SIGTERM (exit 130). Results go to
``<out>/<run id>/results.json`` and ``latency.png``; a table is printed. Exit status 1 when any
mode recorded errors in its measured window.

Adding a mode (extension point): write a factory ``ModeFactory = Callable[[ModeContext],
AsyncContextManager[Mode]]`` (bench.harness) that prepares the mode and yields
``Mode(operation=<async (user_index) -> None>, cpu_sources=[...], workflow_ids=..., config={...})``,
and register it in ``MODES`` below (optionally with ``add_arguments`` for its own options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import direct, engine_floor, saga
from bench import platform as bench_platform
from bench.harness import (
    CpuMeter,
    LoadConfig,
    LoadResult,
    ModeContext,
    ModeFactory,
    TemporalTarget,
    listening_source,
    own_process_source,
    require_loopback,
    run_load,
)
from bench.report import build_report, format_table, machine_info, mode_summary, plot_latency, write_json


@dataclass(frozen=True)
class ModeSpec:
    factory: ModeFactory
    needs_temporal: bool
    description: str
    add_arguments: Callable[[argparse._ArgumentGroup], None] | None = None
    needs_platform: bool = False  # the run's throw-away platform (bench.platform) must be up


# The modes `--modes` accepts.
MODES: dict[str, ModeSpec] = {
    "engine-floor": ModeSpec(
        factory=engine_floor.engine_floor_mode,
        needs_temporal=True,
        description="a workflow of K no-op regular activities in sequence (what Temporal costs)",
        add_arguments=engine_floor.add_arguments,
    ),
    "direct": ModeSpec(
        factory=direct.direct_mode,
        needs_temporal=False,
        description="the checkout's activities called in-process one after another, without Temporal",
        add_arguments=direct.add_arguments,
        needs_platform=True,
    ),
    "saga": ModeSpec(
        factory=saga.saga_mode,
        needs_temporal=True,
        description="complete checkouts through the REST API until the order is CONFIRMED",
        add_arguments=saga.add_arguments,
        needs_platform=True,
    ),
}
PLANNED_MODES: dict[str, str] = {}  # names reserved for modes not written yet


def _modes(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one mode")
    for name in names:
        if name in PLANNED_MODES and name not in MODES:
            raise argparse.ArgumentTypeError(f"mode {name!r} ({PLANNED_MODES[name]}) is not available yet")
        if name not in MODES:
            raise argparse.ArgumentTypeError(f"unknown mode {name!r}; choose from {', '.join(MODES)}")
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--modes", type=_modes, default=["engine-floor"], help="comma-separated, run in order"
    )
    parser.add_argument("--concurrency", type=int, default=20, help="virtual users (closed loop)")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--duration", type=float, default=None, help="measured seconds per mode (default 60)")
    amount.add_argument("--count", type=int, default=None, help="measured operations per mode instead")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds per mode left out of the figures")
    parser.add_argument("--op-timeout", type=float, default=60.0, help="seconds before one operation fails")
    parser.add_argument("--settle", type=float, default=2.0, help="pause between modes, seconds")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="results folder")
    parser.add_argument(
        "--history-sample", type=int, default=200, help="histories read for schedule-to-start"
    )
    parser.add_argument(
        "--temporal-address", default=None, help="HOST:PORT of a running server (else one is started)"
    )
    parser.add_argument(
        "--temporal-storage",
        choices=["file", "memory"],
        default="file",
        help="SQLite of the started dev server: a file like `make up` (default) or in memory",
    )
    parser.add_argument(
        "--dynamic-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dynamic config value for the started dev server, repeatable "
        "(e.g. history.transferProcessorMaxPollRPS=1000)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")
    bench_platform.add_arguments(parser.add_argument_group("platform (saga and direct modes)"))
    for name, spec in MODES.items():
        if spec.add_arguments is not None:
            spec.add_arguments(parser.add_argument_group(f"{name} mode"))
    return parser


@contextlib.asynccontextmanager
async def temporal_for_run(
    args: argparse.Namespace, settings: Any, work_dir: Path
) -> AsyncIterator[TemporalTarget]:
    """The given server (loopback only), or a dev server started for this run and stopped after it."""
    from core.temporal import connect

    if args.temporal_address:
        address = require_loopback(args.temporal_address)
        client = await connect(settings.model_copy(update={"temporal_address": address}))
        port = int(address.rsplit(":", 1)[1])
        yield TemporalTarget(address, settings.temporal_namespace, client, listening_source("temporal", port))
        return

    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from core.temporal import SEARCH_ATTRIBUTES
    from devstack.ports import free_port
    from devstack.temporal_cli import dev_server_tuning_args, find_temporal_cli

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="sagashop-bench-temporal-") as tmp:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(find_temporal_cli(settings)),
            port=port,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            search_attributes=SEARCH_ATTRIBUTES,
            dev_server_extra_args=[
                *dev_server_tuning_args(),
                *(arg for value in args.dynamic_config for arg in ("--dynamic-config-value", value)),
            ],
            dev_server_database_filename=str(Path(tmp) / "temporal.db")
            if args.temporal_storage == "file"
            else None,
        )
        try:
            yield TemporalTarget(
                f"127.0.0.1:{port}",
                settings.temporal_namespace,
                env.client,
                listening_source("temporal", port),
            )
        finally:
            await env.shutdown()


def load_config(args: argparse.Namespace) -> LoadConfig:
    duration = args.duration if args.duration is not None or args.count is not None else 60.0
    return LoadConfig(
        concurrency=args.concurrency,
        duration_s=duration,
        count=args.count,
        warmup_s=args.warmup,
        op_timeout_s=args.op_timeout,
    )


async def run_mode(
    name: str, ctx: ModeContext, cfg: LoadConfig, *, progress: bool | None, history_sample: int
) -> tuple[dict[str, Any], LoadResult]:
    """Prepare one mode, load it, tear it down; then read a sample of its workflow histories."""
    spec = MODES[name]
    async with spec.factory(ctx) as mode:
        meter = CpuMeter([own_process_source(), *mode.cpu_sources])
        result = await run_load(mode.operation, cfg, label=name, cpu_meter=meter, progress=progress)
    schedule_to_start = None
    if mode.workflow_ids is not None and ctx.temporal is not None:
        ids = mode.workflow_ids.sample(result.window_start, result.window_end, history_sample)
        schedule_to_start = await engine_floor.schedule_to_start_latencies(ctx.temporal.client, ids)
    return mode_summary(result, schedule_to_start=schedule_to_start, config=mode.config), result


async def run_benchmark(
    args: argparse.Namespace,
    *,
    temporal: TemporalTarget | None = None,
    settings: Any = None,
    command: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """Run every requested mode, write results.json and latency.png, return (report, folder).

    ``temporal``: use this server (tests pass their fixture's); else see ``temporal_for_run``."""
    from core.settings import get_settings

    settings = settings or get_settings()
    started = datetime.now(UTC)
    run_id = f"{started:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    folder = Path(args.out) / run_id
    folder.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args)
    progress = False if args.no_progress else None
    machine = machine_info()
    summaries: dict[str, dict[str, Any]] = {}
    results: dict[str, LoadResult] = {}

    async with contextlib.AsyncExitStack() as stack:
        if temporal is None and any(MODES[name].needs_temporal for name in args.modes):
            temporal = await stack.enter_async_context(temporal_for_run(args, settings, folder))
        if temporal is not None:  # modes (and the processes they start) reach this server
            settings = settings.model_copy(
                update={"temporal_address": temporal.address, "temporal_namespace": temporal.namespace}
            )
        if any(MODES[name].needs_platform for name in args.modes):
            platform = await stack.enter_async_context(
                bench_platform.platform_for_run(
                    args,
                    settings,
                    folder,
                    run_id,
                    temporal,
                    shoppers=cfg.concurrency * bench_platform.PlatformOptions.shoppers_per_user,
                    say=lambda text: print(text, flush=True),
                )
            )
            settings = platform.settings
        for i, name in enumerate(args.modes):
            if i:
                await asyncio.sleep(args.settle)
            ctx = ModeContext(
                run_id=run_id,
                settings=settings,
                options=args,
                work_dir=folder,
                temporal=temporal if MODES[name].needs_temporal else None,
            )
            summaries[name], results[name] = await run_mode(
                name, ctx, cfg, progress=progress, history_sample=args.history_sample
            )

    load = {
        "concurrency": cfg.concurrency,
        "duration_s": cfg.duration_s,
        "count": cfg.count,
        "warmup_s": cfg.warmup_s,
        "op_timeout_s": cfg.op_timeout_s,
        "temporal": "given: " + temporal.address
        if args.temporal_address and temporal
        else f"dev server started for the run ({args.temporal_storage} SQLite)",
        "dev_server_dynamic_config": list(args.dynamic_config),
    }
    report = build_report(
        summaries,
        machine=machine,
        load=load,
        run_id=run_id,
        command=command or "python -m bench " + shlex.join(sys.argv[1:]),
        started_at=started,
    )
    write_json(report, folder / "results.json")
    plot_latency(results, folder / "latency.png")
    return report, folder


async def _run_stoppable(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """run_benchmark, cancelled (so that everything it started is stopped) on SIGTERM as on Ctrl-C."""
    import signal

    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_benchmark(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for value in args.dynamic_config:
        if "=" not in value:
            raise SystemExit(f"--dynamic-config {value!r}: expected KEY=VALUE")
    try:
        report, folder = asyncio.run(_run_stoppable(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: every process the benchmark started has been stopped", file=sys.stderr)
        return 130
    print(format_table(report))
    print(f"\nresults: {folder / 'results.json'}\nplot:    {folder / 'latency.png'}")
    failed = {name: m["errors"]["total"] for name, m in report["modes"].items() if m["errors"]["total"]}
    if failed:
        print(f"errors in the measured window: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the Temporal client's Rust threads can abort a finalizing
    # interpreter ("PyGILState_Release ... must be current", temporalio/sdk-python#300).
    os._exit(code)
