"""GET /readyz over HTTP against the running stack: healthy, then a stopped worker and a stopped
database show as failing within a few seconds."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.registry import SERVICE_NAMES
from tests.conftest import Stack


async def _readyz(stack: Stack) -> tuple[int, dict, float]:
    started = time.monotonic()
    async with stack.http() as http:
        response = await http.get("/readyz")
    return response.status_code, response.json(), time.monotonic() - started


async def _wait_ready(stack: Stack, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status, body, _ = await _readyz(stack)
        if status == 200 or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.5)


async def test_readyz_reports_every_service_healthy(stack: Stack) -> None:
    body = await _wait_ready(stack)
    assert body["ok"] is True, body
    assert body["temporal"]["ok"] and body["sagas_worker"]["ok"]
    by_name = {s["service"]: s for s in body["services"]}
    assert set(by_name) == set(SERVICE_NAMES)
    for name, state in by_name.items():
        # each service checked its own database, connected as its own role, migrations at head
        assert state["ok"], state
        assert state["database"] == f"{name}_db"
        assert state["role"] == f"{name}_svc"
        assert state["revision"] == state["head"] is not None


async def test_stopped_worker_shows_failing_quickly(stack: Stack) -> None:
    await _wait_ready(stack)
    stack.supervisor.kill("worker-cart")
    try:
        status, body, elapsed = await _readyz(stack)
        assert status == 503
        by_name = {s["service"]: s for s in body["services"]}
        assert by_name["cart"]["ok"] is False
        assert "worker" in by_name["cart"]["error"]
        assert all(by_name[n]["ok"] for n in SERVICE_NAMES if n != "cart"), body
        assert elapsed < stack.settings.readyz_timeout_s + 2
    finally:
        stack.supervisor.restart("worker-cart")
    body = await _wait_ready(stack)
    assert body["ok"] is True, body


async def test_stopped_database_shows_failing(stack: Stack, postgres_server) -> None:  # type: ignore[no-untyped-def]
    """Stopping a database is done by forbidding new connections to it: same failure as a dead server."""
    import asyncpg

    await _wait_ready(stack)
    admin = await asyncpg.connect(postgres_server.admin_dsn)
    try:
        await admin.execute('ALTER DATABASE "discount_db" WITH ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'discount_db'"
        )
        status, body, elapsed = await _readyz(stack)
        assert status == 503
        by_name = {s["service"]: s for s in body["services"]}
        assert by_name["discount"]["ok"] is False
        assert by_name["discount"]["error"]
        assert elapsed < stack.settings.readyz_timeout_s + 2
    finally:
        await admin.execute('ALTER DATABASE "discount_db" WITH ALLOW_CONNECTIONS true')
        await admin.close()
    body = await _wait_ready(stack)
    assert body["ok"] is True


@pytest.mark.parametrize("victim", ["order"])
async def test_role_cannot_connect_to_another_services_database(databases, victim: str) -> None:  # type: ignore[no-untyped-def]
    """Invariant 6: cart_svc (with its valid password) is refused by order_db."""
    import asyncpg
    from sqlalchemy.engine import make_url

    cart = make_url(databases.database_url("cart"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
        await asyncpg.connect(
            host=cart.host,
            port=cart.port,
            user=cart.username,
            password=cart.password,
            database=f"{victim}_db",
        )
    # and it can connect to its own
    conn = await asyncpg.connect(
        host=cart.host, port=cart.port, user=cart.username, password=cart.password, database="cart_db"
    )
    await conn.close()
