"""`python -m devstack up` runs the whole platform on this machine in the foreground (`make up`)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

import typer

from core.settings import ROOT, get_settings
from devstack import migrate
from devstack.errors import SetupError
from devstack.ports import require_free
from devstack.postgres import LocalCluster, bootstrap_databases, find_pg_bindir
from devstack.stack import api_spec, sandbox_specs, settings_env, temporal_spec, worker_specs
from devstack.supervisor import ManagedProcess, Supervisor
from devstack.temporal_cli import find_temporal_cli

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def up(
    saga_workers: int = typer.Option(1, help="processes serving the 'sagas' task queue"),
    service_workers: int = typer.Option(1, help="processes per service task queue"),
) -> None:
    """Start PostgreSQL, Temporal (with its Web UI), every worker, the API and the sandboxes."""
    started = time.monotonic()
    settings = get_settings()
    data_dir = settings.data_dir
    cluster: LocalCluster | None = None
    supervisor = Supervisor(settings.log_dir, {**os.environ, **settings_env(settings)}, ROOT)
    try:
        temporal_port = int(settings.temporal_address.rsplit(":", 1)[1])
        for port, what, setting in [
            (temporal_port, "Temporal", "TEMPORAL_ADDRESS"),
            (settings.temporal_ui_port, "the Temporal Web UI", "TEMPORAL_UI_PORT"),
            (settings.api_port, "the API", "API_PORT"),
        ]:
            require_free(port, what, setting)
        cli = find_temporal_cli(settings)

        if settings.postgres_admin_url:
            admin_dsn = _plain_dsn(settings.postgres_admin_url)
            _say("PostgreSQL: using the server at POSTGRES_ADMIN_URL")
        else:
            cluster = LocalCluster(data_dir / "postgres", settings.postgres_port)
            if cluster.ensure_initialized():
                _say(f"PostgreSQL: created a cluster in {cluster.data_dir}")
            cluster.start()
            admin_dsn = cluster.admin_dsn()
            _say(f"PostgreSQL: running on 127.0.0.1:{settings.postgres_port}")
        asyncio.run(bootstrap_databases(admin_dsn, settings))
        migrate.upgrade_all(settings)
        _say("databases: 10 databases and roles ready, migrations at head")

        (data_dir / "temporal").mkdir(parents=True, exist_ok=True)
        supervisor.start(temporal_spec(cli, settings, db_file=data_dir / "temporal" / "temporal.db"))
        for spec in sandbox_specs(settings, data_dir / "sandboxes"):
            (data_dir / "sandboxes").mkdir(parents=True, exist_ok=True)
            supervisor.start(spec)
        for spec in worker_specs(settings, sagas_processes=saga_workers, service_processes=service_workers):
            supervisor.start(spec, wait=False)
        supervisor.start(api_spec(settings))
        for proc in supervisor.procs.values():
            supervisor.wait_ready(proc)
    except SetupError as exc:
        supervisor.stop_all()
        if cluster is not None:
            cluster.stop()
        _fail(exc)

    api = f"http://{settings.api_host}:{settings.api_port}"
    _say(
        f"\nsagashop is up in {time.monotonic() - started:.0f} s ({len(supervisor.procs)} processes, logs in {settings.log_dir})\n"
        f"  API docs        {api}/docs\n"
        f"  readiness       {api}/readyz\n"
        f"  Temporal Web UI http://127.0.0.1:{settings.temporal_ui_port}\n"
        f"  mail sink       {settings.mail_sink_url}/messages\n"
        f"  PSP sandbox     {settings.psp_url}   carrier sandbox {settings.carrier_url}\n"
        "Ctrl-C stops everything; data stays in "
        f"{data_dir} for the next run."
    )

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    restarts: dict[str, list[float]] = {}

    def on_exit(proc: ManagedProcess) -> None:
        recent = [t for t in restarts.get(proc.spec.name, []) if t > time.monotonic() - 60]
        _say(
            f"! {proc.spec.name} exited with code {proc.popen.returncode}; last lines of {proc.log_path}:\n{proc.log_tail(8)}"
        )
        if len(recent) >= 5:
            _say(f"! {proc.spec.name} keeps failing; not restarting it (see its log)")
            proc.popen.returncode = None  # stop reporting it
            return
        restarts[proc.spec.name] = [*recent, time.monotonic()]
        time.sleep(min(2 ** len(recent), 10))
        supervisor.start(proc.spec, wait=False)

    try:
        supervisor.watch(on_exit, stop)
    except KeyboardInterrupt:
        pass
    finally:
        _say("\nstopping ...")
        supervisor.stop_all()
        if cluster is not None:
            cluster.stop()
        _say("stopped.")


@app.command()
def tools() -> None:
    """Find (or build / install) the Temporal CLI and the PostgreSQL server binaries."""
    settings = get_settings()
    cli = find_temporal_cli(settings)
    print(f"Temporal CLI: {cli}")
    if not settings.postgres_admin_url:
        print(f"PostgreSQL binaries: {find_pg_bindir()}")


@app.command("init-db")
def init_db() -> None:
    """On the server at POSTGRES_ADMIN_URL: create the service databases and roles, then migrate them."""
    settings = get_settings()
    if not settings.postgres_admin_url:
        raise SetupError("init-db needs POSTGRES_ADMIN_URL (a superuser URL of the server to prepare)")
    asyncio.run(bootstrap_databases(_plain_dsn(settings.postgres_admin_url), settings))
    migrate.upgrade_all(settings)
    print("databases ready: 10 databases and roles, migrations at head")


@app.command()
def replay(
    workflow_id: str = typer.Option(None, "--workflow-id", "-w", help="replay this workflow's latest run"),
    query: str = typer.Option(
        None,
        "--query",
        "-q",
        help="visibility query, e.g. \"WorkflowType='checkout' AND ExecutionStatus='Failed'\"",
    ),
    files: list[Path] = typer.Option(
        None, "--file", "-f", help="history JSON files or folders (saved fixtures)"
    ),
    limit: int = typer.Option(1000, help="at most this many workflows from --query"),
) -> None:
    """Replay workflow histories against the current workflow code; exit 1 on any non-determinism."""
    from core.temporal import connect
    from devstack.replay import ReplayOutcome, histories_from_files, histories_from_server, replay_all

    async def go() -> list[ReplayOutcome]:
        if files:
            return await replay_all(histories_from_files(files))
        if not (workflow_id or query):
            raise SetupError("say what to replay: --workflow-id, --query or --file")
        client = await connect(get_settings())
        return list(
            await replay_all(histories_from_server(client, workflow_id=workflow_id, query=query, limit=limit))
        )

    outcomes = asyncio.run(go())
    failed = [o for o in outcomes if not o.ok]
    for outcome in outcomes:
        mark = "ok  " if outcome.ok else "FAIL"
        print(f"{mark} {outcome.workflow_id} {outcome.run_id or ''}")
        if not outcome.ok:
            print(f"     {outcome.error}")
    print(f"{len(outcomes)} replayed, {len(failed)} non-deterministic")
    if failed or not outcomes:
        raise typer.Exit(1)


@app.command("save-history")
def save_history_cmd(
    workflow_id: str = typer.Argument(..., help="the workflow to save"),
    dest: Path = typer.Argument(..., help="JSON file to write, e.g. tests/histories/checkout/happy.json"),
) -> None:
    """Save one workflow's history as a replay test fixture."""
    from core.temporal import connect
    from devstack.replay import save_history

    async def go() -> Path:
        return await save_history(await connect(get_settings()), workflow_id, dest)

    print(f"saved {asyncio.run(go())}")


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@app.command("migrate")
def migrate_cmd(service: list[str] = typer.Argument(None, help="services to migrate (default: all)")) -> None:
    """Run the Alembic migrations of every (or the named) service database."""
    migrate.upgrade_all(get_settings(), list(service) if service else None)


@app.command()
def erd(
    check: bool = typer.Option(False, "--check", help="write nothing; exit 1 when a file is out of date"),
) -> None:
    """Regenerate the ER diagrams (docs/erd/) and the index catalogue in docs/database.md from the models."""
    from devstack.erd import stale, write

    changed = stale() if check else write()
    print(
        "\n".join(f"{'out of date' if check else 'wrote'}: {p}" for p in changed)
        or "ER diagrams are up to date"
    )
    if check and changed:
        raise typer.Exit(1)


@app.command()
def seed(
    products: int = typer.Option(300, help="demo catalog size"),
    shoppers: int = typer.Option(0, help="demo shoppers with an address and a PSP-tokenized card"),
    out: Path = typer.Option(None, help="where to write the shoppers' ids (default var/seed/shoppers.json)"),
) -> None:
    """Load the demo catalog, shipping configuration, coupons and (optionally) demo shoppers; idempotent."""
    from devstack.seed import seed as run_seed

    report = asyncio.run(run_seed(get_settings(), products=products, shoppers=shoppers, shoppers_file=out))
    print("\n".join(report.lines()))


def _say(text: str) -> None:
    print(text, flush=True)


def _fail(exc: SetupError) -> None:
    print(f"error: {exc}", file=sys.stderr, flush=True)
    raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
