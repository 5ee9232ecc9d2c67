"""Database engines and sessions. Each process builds engines only for the services it hosts."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from core.settings import Settings

SessionFactory = async_sessionmaker[AsyncSession]


def create_engine(settings: Settings, service_name: str, *, pool_size: int | None = None) -> AsyncEngine:
    return create_async_engine(
        settings.database_url(service_name),
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_timeout=settings.db_connect_timeout_s * 2,
        connect_args={
            "timeout": settings.db_connect_timeout_s,
            "server_settings": {"application_name": f"sagashop-{service_name}"},
        },
    )


def session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)
