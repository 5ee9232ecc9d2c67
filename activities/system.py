"""Activities every service worker hosts besides its own: the readiness ``<svc>.ping``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from core.health import ServiceHealth, check_database


def ping_activity_name(service_name: str) -> str:
    return f"{service_name}.ping"


def make_ping(service_name: str, engine: AsyncEngine) -> Callable[[], Awaitable[ServiceHealth]]:
    """``<svc>.ping``: checks the service's own database connection (its own role) and migrations."""

    @activity.defn(name=ping_activity_name(service_name))
    async def ping() -> ServiceHealth:
        return await check_database(service_name, engine)

    return ping
