"""The readiness check each service worker answers: its own database, its own role, migrations at head."""

from __future__ import annotations

import asyncio
import functools
import time

from alembic.script import ScriptDirectory
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.registry import service
from core.settings import ROOT


class ServiceHealth(BaseModel):
    service: str
    ok: bool
    database: str | None = None
    role: str | None = None
    revision: str | None = None
    head: str | None = None
    latency_ms: float | None = None
    error: str | None = None


@functools.cache
def migration_head(service_name: str) -> str | None:
    script = ScriptDirectory(str(ROOT / service(service_name).migrations_dir))
    return script.get_current_head()


async def check_database(service_name: str, engine: AsyncEngine, timeout_s: float = 2.0) -> ServiceHealth:
    head = migration_head(service_name)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT current_user, current_database(),"
                        " (SELECT version_num FROM alembic_version LIMIT 1)"
                    )
                )
            ).one()
    except TimeoutError:
        return ServiceHealth(
            service=service_name, ok=False, head=head, error="database did not answer in time"
        )
    except Exception as exc:  # any connection / SQL failure is a failed check, reported as text
        return ServiceHealth(
            service=service_name, ok=False, head=head, error=f"{type(exc).__name__}: {exc}"[:300]
        )
    role, database, revision = row
    error = None if revision == head else f"migrations at {revision}, head is {head}"
    return ServiceHealth(
        service=service_name,
        ok=error is None,
        database=database,
        role=role,
        revision=revision,
        head=head,
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        error=error,
    )
