"""Every service's Alembic environment, on a real server: upgrade to head, the models and the
migrated schema agree, downgrade to base leaves nothing behind, upgrade again works."""

from __future__ import annotations

import asyncio
import importlib

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import make_url

from core.registry import SERVICES, ServiceInfo
from core.settings import Settings
from devstack.migrate import alembic_config
from migrations.common import _include_object
from tests.conftest import PostgresServer


async def _scratch_database(admin_dsn: str, settings: Settings, info: ServiceInfo) -> str:
    """A fresh database owned by the service role, so the round trip never touches shared test data."""
    url = make_url(settings.database_url(info.name))
    name = f"{info.database}_migration_test"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}" OWNER "{url.username}" TEMPLATE template0')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False)


async def _tables(url: str) -> set[str]:
    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, database=u.database
    )
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


@pytest.mark.parametrize("info", SERVICES, ids=[s.name for s in SERVICES])
async def test_upgrade_downgrade_upgrade_and_models_match(
    info: ServiceInfo, databases: Settings, postgres_server: PostgresServer
) -> None:
    url = await _scratch_database(postgres_server.admin_dsn, databases, info)
    cfg = alembic_config(info.name, url)
    await asyncio.to_thread(command.upgrade, cfg, "head")
    metadata = importlib.import_module(f"services.{info.package}.models").metadata
    diff = await asyncio.to_thread(_schema_diff_async_safe, url, metadata)
    assert diff == [], f"models and migrations of {info.name} disagree: {diff}"
    assert set(metadata.tables) <= await _tables(url)

    await asyncio.to_thread(command.downgrade, cfg, "base")
    assert await _tables(url) <= {"alembic_version"}
    await asyncio.to_thread(command.upgrade, cfg, "head")
    assert set(metadata.tables) <= await _tables(url)


def _schema_diff_async_safe(url: str, metadata: object) -> list[object]:
    """compare_metadata needs a sync connection: run it through the async engine's run_sync."""
    from sqlalchemy.ext.asyncio import create_async_engine

    async def go() -> list[object]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:

                def compare(sync_conn: object) -> list[object]:
                    ctx = MigrationContext.configure(
                        sync_conn,  # type: ignore[arg-type]
                        opts={"compare_type": True, "include_object": _include_object},
                    )
                    return list(compare_metadata(ctx, metadata))  # type: ignore[arg-type]

                return await conn.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(go())
