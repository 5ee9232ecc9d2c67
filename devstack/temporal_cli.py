"""Find the Temporal CLI (dev server + Web UI), or build the pinned version into a cache once."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from core.settings import Settings
from devstack.errors import SetupError

TEMPORAL_CLI_VERSION = "v1.5.1"  # later tags carry a `replace` directive and cannot be `go install`ed
TEMPORAL_CLI_MODULE = "github.com/temporalio/cli/cmd/temporal"


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sagashop"


def cached_cli_path() -> Path:
    return cache_dir() / "temporal-cli" / TEMPORAL_CLI_VERSION / "temporal"


def find_temporal_cli(settings: Settings, *, build: bool = True) -> Path:
    """The setting TEMPORAL_CLI_PATH, else `temporal` on PATH, else the cached build (made if needed)."""
    if settings.temporal_cli_path is not None:
        path = settings.temporal_cli_path
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SetupError(f"TEMPORAL_CLI_PATH={path} is not an executable file")
        return path
    if on_path := shutil.which("temporal"):
        return Path(on_path)
    cached = cached_cli_path()
    if cached.is_file():
        return cached
    if not build:
        raise SetupError("the Temporal CLI is not installed", _install_hint())
    return build_temporal_cli(cached)


def build_temporal_cli(target: Path) -> Path:
    go = shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if Path(p).exists()), None
    )
    if go is None:
        raise SetupError(
            "the Temporal CLI is not installed and Go is not available to build it", _install_hint()
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"building the Temporal CLI {TEMPORAL_CLI_VERSION} into {target.parent} "
        "(first run only; takes a few minutes) ...",
        flush=True,
    )
    started = time.monotonic()
    env = {**os.environ, "GOBIN": str(target.parent), "CGO_ENABLED": "0"}
    done = subprocess.run(
        [go, "install", f"{TEMPORAL_CLI_MODULE}@{TEMPORAL_CLI_VERSION}"],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not target.is_file():
        raise SetupError(
            f"building the Temporal CLI failed:\n{done.stderr[-1500:]}",
            _install_hint(),
        )
    print(f"built the Temporal CLI in {time.monotonic() - started:.0f} s", flush=True)
    return target


def _install_hint() -> str:
    return (
        "install Go (https://go.dev/doc/install) and run `make up` again, or install the Temporal CLI "
        f"yourself (`go install {TEMPORAL_CLI_MODULE}@{TEMPORAL_CLI_VERSION}`, or a release binary) and put "
        "it on PATH or in TEMPORAL_CLI_PATH"
    )


def dev_server_args(*, db_file: Path | None, port: int, ui_port: int | None, namespace: str) -> list[str]:
    """Arguments after `temporal` for the dev server, with the project's search attributes."""
    from core.temporal import search_attribute_cli_args

    args = [
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--namespace",
        namespace,
        "--log-level",
        "warn",
        *search_attribute_cli_args(),
        *dev_server_tuning_args(),
    ]
    if db_file is not None:
        args += ["--db-filename", str(db_file)]
    args += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    return args


def dev_server_tuning_args() -> list[str]:
    # Write-ahead logging lets readers (visibility, UI) proceed while the history writer commits;
    # synchronous=NORMAL is durable across process crashes in WAL mode (the dev server is one process).
    # Task dispatch: one task-queue partition (no forwarding between partitions with few pollers) and
    # an unthrottled transfer queue cut schedule-to-start from ~40 ms to ~2.5 ms per workflow or
    # activity task here (measured with `python -m bench --modes engine-floor`; README, Performance).
    # Each of the three alone does not help: all three are needed.
    # The history queues (transfer, timer, visibility) checkpoint what they have done every 30 s by
    # default; until then the finished tasks pile up and every task costs more: latency climbed ~60 %
    # in a 30-60 s sawtooth. Checkpointing every 5 s flattened it: engine floor 12.2 -> 14.2
    # workflows/s, CPU per workflow 156 -> 133 ms (README, Performance, "What each tuning bought").
    return [
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        *(
            arg
            for value in (
                "history.transferProcessorMaxPollRPS=1000",
                "matching.numTaskqueueReadPartitions=1",
                "matching.numTaskqueueWritePartitions=1",
                *(
                    f'history.{queue}ProcessorUpdateAckInterval="5s"'
                    for queue in ("transfer", "timer", "visibility")
                ),
            )
            for arg in ("--dynamic-config-value", value)
        ),
    ]
