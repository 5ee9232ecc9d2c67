"""Settings: development defaults work; production refuses them; bad values are clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from core.registry import SERVICE_NAMES
from core.settings import ROOT, Settings

PROD_SECRETS = {
    "jwt_secret": "x" * 40,
    "encryption_key": "cHJvZC1rZXktMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=",
    "psp_webhook_secret": "p" * 32,
    "carrier_webhook_secret": "c" * 32,
}


def test_each_service_has_its_own_database_url() -> None:
    settings = Settings(app_env="development")
    for name in SERVICE_NAMES:
        url = settings.database_url(name)
        assert f"{name}_svc:" in url and url.endswith(f"/{name}_db")


def test_production_refuses_default_secrets_and_database_passwords() -> None:
    with pytest.raises(ValidationError) as err:
        Settings(app_env="production")
    message = str(err.value)
    for name in (
        "JWT_SECRET",
        "ENCRYPTION_KEY",
        "PSP_WEBHOOK_SECRET",
        "AUTH_DATABASE_URL",
        "RETURN_DATABASE_URL",
    ):
        assert name in message


def test_production_accepts_real_values() -> None:
    urls = {
        f"{n}_database_url": f"postgresql+asyncpg://{n}_svc:s3cret@db.internal:5432/{n}_db"
        for n in SERVICE_NAMES
    }
    settings = Settings(app_env="production", **PROD_SECRETS, **urls)  # type: ignore[arg-type]
    assert settings.database_url("cart").endswith("@db.internal:5432/cart_db")


def test_a_process_with_bad_settings_exits_with_a_readable_message() -> None:
    done = subprocess.run(
        [sys.executable, "worker.py", "cart"],
        cwd=ROOT,
        env={"APP_ENV": "production", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "configuration error" in done.stderr and "JWT_SECRET" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_value_is_refused() -> None:
    with pytest.raises(ValidationError, match="db_pool_size"):
        Settings(db_pool_size=0)
