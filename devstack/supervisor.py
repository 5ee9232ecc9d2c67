"""Start, watch and stop the platform's processes. Used by `make up` and by the test fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from devstack.errors import SetupError


@dataclass
class ProcSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_url: str | None = None  # polled until it answers 2xx
    ready_port: int | None = None  # polled until it accepts TCP connections
    ready_timeout_s: float = 60.0


@dataclass
class ManagedProcess:
    spec: ProcSpec
    popen: subprocess.Popen[bytes]
    log_path: Path
    restarts: int = 0
    log_handle: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Supervisor:
    """Owns child processes: each in its own process group, output appended to ``<log_dir>/<name>.log``."""

    def __init__(self, log_dir: Path, base_env: dict[str, str], cwd: Path) -> None:
        self.log_dir = log_dir
        self.base_env = base_env
        self.cwd = cwd
        self.procs: dict[str, ManagedProcess] = {}
        self._lock = threading.Lock()
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, spec: ProcSpec, *, wait: bool = True) -> ManagedProcess:
        log_path = self.log_dir / f"{spec.name}.log"
        handle = log_path.open("ab")
        handle.write(f"\n--- start {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(spec.argv)}\n".encode())
        handle.flush()
        popen = subprocess.Popen(
            spec.argv,
            cwd=self.cwd,
            env={**self.base_env, **spec.env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc = ManagedProcess(spec, popen, log_path, log_handle=handle)
        previous = self.procs.get(spec.name)
        if previous is not None:
            proc.restarts = previous.restarts + 1
        with self._lock:
            self.procs[spec.name] = proc
        if wait:
            self.wait_ready(proc)
        return proc

    def wait_ready(self, proc: ManagedProcess) -> None:
        spec = proc.spec
        deadline = time.monotonic() + spec.ready_timeout_s
        while True:
            if not proc.alive():
                raise SetupError(
                    f"{spec.name} exited during start (code {proc.popen.returncode}):\n{proc.log_tail()}"
                )
            if _is_ready(spec):
                return
            if time.monotonic() > deadline:
                raise SetupError(
                    f"{spec.name} did not become ready in {spec.ready_timeout_s:g} s:\n{proc.log_tail()}"
                )
            time.sleep(0.1)

    def signal(self, name: str, sig: int) -> None:
        proc = self.procs[name]
        if proc.alive():
            os.killpg(proc.pid, sig)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would: no graceful shutdown, no cleanup."""
        self.signal(name, signal.SIGKILL)
        self.procs[name].popen.wait(10)

    def restart(self, name: str) -> ManagedProcess:
        proc = self.procs[name]
        if proc.alive():
            self.stop_one(proc)
        return self.start(proc.spec)

    def stop_one(self, proc: ManagedProcess, timeout_s: float = 15.0) -> None:
        if proc.alive():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.popen.wait(5)
            except ProcessLookupError:
                pass
        if proc.log_handle is not None:
            proc.log_handle.close()

    def stop_all(self) -> None:
        """Stop in reverse start order; every process gets SIGTERM first, then SIGKILL if it lingers."""
        for proc in reversed(list(self.procs.values())):
            if proc.alive():
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for proc in reversed(list(self.procs.values())):
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.popen.wait(remaining)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.popen.wait(5)
            if proc.log_handle is not None:
                proc.log_handle.close()

    def watch(
        self, on_exit: Callable[[ManagedProcess], None], stop: threading.Event, period_s: float = 1.0
    ) -> None:
        """Call ``on_exit`` for each process that died, until ``stop`` is set."""
        while not stop.wait(period_s):
            for proc in list(self.procs.values()):
                if not proc.alive() and proc.popen.returncode is not None and not stop.is_set():
                    on_exit(proc)


def _is_ready(spec: ProcSpec) -> bool:
    if spec.ready_url:
        try:
            return httpx.get(spec.ready_url, timeout=1.0).is_success
        except httpx.HTTPError:
            return False
    if spec.ready_port:
        import socket

        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", spec.ready_port)) == 0
    time.sleep(0.3)  # no probe: alive after a short grace period counts as ready
    return True


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]
