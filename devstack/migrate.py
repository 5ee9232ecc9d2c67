"""Run each service's Alembic migrations against its own database, as its own role."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from core.registry import SERVICES, service
from core.settings import ROOT, Settings


def alembic_config(service_name: str, database_url: str) -> Config:
    info = service(service_name)
    cfg = Config(str(ROOT / "alembic.ini"), ini_section=info.name)
    cfg.set_main_option("script_location", str(ROOT / info.migrations_dir))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(settings: Settings, service_name: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service_name, settings.database_url(service_name)), revision)


def downgrade(settings: Settings, service_name: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(service_name, settings.database_url(service_name)), revision)


def upgrade_all(settings: Settings, services: list[str] | None = None) -> None:
    """Migrate every service database, one after the other (Alembic's context is process-global)."""
    for name in services or [s.name for s in SERVICES]:
        upgrade(settings, name)
