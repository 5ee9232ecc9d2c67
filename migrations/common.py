"""What every per-database Alembic environment does. Each ``migrations/<svc>/env.py`` calls
``run_migrations("<svc>", <its models' metadata>)``; nothing here knows about a particular service.

The URL comes from the Alembic config (set by ``devstack migrate`` and the tests) or else from the
settings, so ``alembic -n cart upgrade head`` works from the repository root as well.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from core.settings import get_settings


def run_migrations(service_name: str, metadata: MetaData) -> None:
    config = context.config
    url = config.attributes.get("database_url") or get_settings().database_url(service_name)

    def configure(connection: Connection | None = None) -> None:
        context.configure(
            connection=connection,
            url=None if connection is not None else url,
            target_metadata=metadata,
            compare_type=True,
            compare_server_default=True,
            include_object=_include_object,
            literal_binds=connection is None,
            transaction_per_migration=True,
        )

    if context.is_offline_mode():
        configure()
        with context.begin_transaction():
            context.run_migrations()
        return

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(_run_sync, configure)
        finally:
            await engine.dispose()

    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection, configure)
    else:
        asyncio.run(run_async())


def _run_sync(connection: Connection, configure: object) -> None:
    configure(connection)  # type: ignore[operator]
    with context.begin_transaction():
        context.run_migrations()
    if connection.in_transaction():
        connection.commit()


def _is_partition(name: str | None) -> bool:
    """``orders_p3`` (hash) or ``notifications_p2026_11`` (monthly): created by SQL, not by the models."""
    if not name or "_p" not in name:
        return False
    suffix = name.rsplit("_p", 1)[-1].replace("_", "")
    return suffix.isdigit()


def _include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    if type_ == "table" and reflected and compare_to is None:
        return not _is_partition(name)
    # PostgreSQL clones a foreign key to a partitioned table once per partition; those clones are internal.
    if type_ == "foreign_key_constraint" and reflected and compare_to is None:
        referred = getattr(obj, "referred_table", None)
        return not _is_partition(getattr(referred, "name", None))
    return True
