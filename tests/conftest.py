"""Session fixtures: a throw-away PostgreSQL server and Temporal dev server, started once per test
session, never servers left running. PostgreSQL comes from testcontainers where a Docker engine is
reachable, else from a local cluster (initdb / pg_ctl) in a temporary folder. Temporal is the dev
server of the Temporal CLI, started through ``WorkflowEnvironment.start_local``."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core import settings as settings_module
from core.db import SessionFactory, create_engine, session_factory
from core.settings import ROOT, Settings
from core.temporal import SEARCH_ATTRIBUTES
from devstack import migrate
from devstack.ports import free_port
from devstack.postgres import LocalCluster, bootstrap_databases
from devstack.stack import api_spec, sandbox_specs, settings_env, worker_specs
from devstack.supervisor import Supervisor
from devstack.temporal_cli import dev_server_tuning_args, find_temporal_cli
from tests.factories import shipping_methods


@dataclass
class PostgresServer:
    host: str
    port: int
    admin_dsn: str


def _docker_reachable() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    # Not pytest's tmp_path: the PostgreSQL OS user must be able to reach the cluster folder.
    path = Path(tempfile.mkdtemp(prefix="sagashop-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(tmp_root: Path) -> Iterator[PostgresServer]:
    if os.environ.get("TEST_USE_TESTCONTAINERS", "auto") != "never" and _docker_reachable():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver=None) as container:
            host, port = container.get_container_host_ip(), int(container.get_exposed_port(5432))
            yield PostgresServer(host, port, container.get_connection_url())
        return
    cluster = LocalCluster(tmp_root / "pg", free_port())
    cluster.ensure_initialized()
    cluster.start()
    try:
        yield PostgresServer("127.0.0.1", cluster.port, cluster.admin_dsn())
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def settings(postgres_server: PostgresServer, tmp_root: Path) -> Iterator[Settings]:
    """Settings pointing at the test servers; also exported to os.environ for code that reads them."""
    values = Settings(
        app_env="test",
        data_dir=tmp_root / "var",
        postgres_host=postgres_server.host,
        postgres_port=postgres_server.port,
        temporal_address=f"127.0.0.1:{free_port()}",
        api_port=free_port(),
        psp_url=f"http://127.0.0.1:{free_port()}",
        carrier_url=f"http://127.0.0.1:{free_port()}",
        smtp_port=free_port(),
        mail_sink_url=f"http://127.0.0.1:{free_port()}",
        db_pool_size=10,
        # saga durations in seconds, so timers and retries run inside a test
        saga_activity_timeout_s=5,
        saga_compensation_attempts=3,
        saga_compensation_max_interval_s=1,
        payment_action_timeout_s=20,
        maintenance_interval_s=86_400,  # tests run the sweeps themselves
        start_shipping=True,
        shipping_no_pickup_s=4,
        shipping_no_movement_s=10,
        shipping_label_attempts=3,
        return_auto_approve_under_amount=3000,
        return_decision_timeout_s=3,
        return_rma_ttl_s=12,
        password_reset_cooldown_s=3,
    )
    saved = dict(os.environ)
    os.environ.update(settings_env(values))
    settings_module.get_settings.cache_clear()
    yield values
    os.environ.clear()
    os.environ.update(saved)
    settings_module.get_settings.cache_clear()


@pytest.fixture(scope="session")
async def databases(settings: Settings, postgres_server: PostgresServer) -> Settings:
    """The ten databases and roles, migrated to head."""
    await bootstrap_databases(postgres_server.admin_dsn, settings)
    await asyncio.to_thread(migrate.upgrade_all, settings)
    return settings


@pytest.fixture(scope="session")
async def engines(databases: Settings) -> AsyncIterator[dict[str, AsyncEngine]]:
    from core.registry import SERVICE_NAMES

    made = {name: create_engine(databases, name) for name in SERVICE_NAMES}
    yield made
    for engine in made.values():
        await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engines: dict[str, AsyncEngine]) -> dict[str, SessionFactory]:
    """``sessions["cart"]()`` opens a session on cart_db as role cart_svc."""
    return {name: session_factory(engine) for name, engine in engines.items()}


@pytest.fixture(scope="session")
async def temporal_env(settings: Settings) -> AsyncIterator[WorkflowEnvironment]:
    cli = find_temporal_cli(settings)
    port = int(settings.temporal_address.rsplit(":", 1)[1])
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(cli),
        port=port,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=dev_server_tuning_args(),
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
async def methods(stack: Stack, sessions: dict[str, SessionFactory]) -> dict[str, uuid.UUID]:
    """The demo shipping methods (loaded once, idempotent), keyed like ``US:standard``."""
    return await shipping_methods(sessions)


@dataclass
class Stack:
    """The running platform: every worker process, the API and the sandboxes, on the test servers."""

    settings: Settings
    supervisor: Supervisor
    client: Client

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, timeout=30)


@pytest.fixture(scope="session")
def stack(databases: Settings, temporal_client: Client) -> Iterator[Stack]:
    settings = databases
    supervisor = Supervisor(settings.log_dir, {**os.environ, **settings_env(settings)}, ROOT)
    try:
        if (ROOT / "sandboxes" / "psp").is_dir():
            for spec in sandbox_specs(settings, None):
                supervisor.start(spec)
        for spec in worker_specs(settings):
            supervisor.start(spec, wait=False)
        supervisor.start(api_spec(settings))
        for proc in supervisor.procs.values():
            supervisor.wait_ready(proc)
        yield Stack(settings, supervisor, temporal_client)
    finally:
        supervisor.stop_all()


HISTORIES_DIR = ROOT / "tests" / "histories"


async def record_history(client: Client, workflow_id: str, kind: str, scenario: str) -> None:
    """With SAGASHOP_RECORD_HISTORIES=1, store this workflow's history as a replay fixture
    (tests/histories/<kind>/<scenario>.json). Run the scenario tests once that way after a deliberate
    workflow change, review the diff, commit it."""
    if os.environ.get("SAGASHOP_RECORD_HISTORIES") != "1":
        return
    from devstack.replay import save_history

    await save_history(client, workflow_id, HISTORIES_DIR / kind / f"{scenario}.json")


# temporalio's native runtime can abort the interpreter while it shuts down (sdk-python#300), which
# would turn a green run into exit code 134. Once pytest has printed its summary, leave directly.
_EXIT_STATUS: dict[str, int] = {}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if "code" in _EXIT_STATUS and os.environ.get("SAGASHOP_NO_HARD_EXIT") != "1":
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS["code"])
