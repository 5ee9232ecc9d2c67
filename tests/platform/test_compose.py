"""compose.yaml describes the same processes, commands and settings as the code (no Docker engine
runs here, so the file is checked statically against the code)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from core.registry import SERVICE_NAMES
from core.settings import ROOT, Settings
from core.temporal import SEARCH_ATTRIBUTES


def _expand(value: str) -> str:
    """Resolve ${VAR:-default} the way compose does when VAR is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: _expand(str(v)) for k, v in (service.get("environment") or {}).items()}


def test_every_worker_and_process_is_a_container(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SERVICE_NAMES:
        assert services[f"worker-{name}"]["command"] == ["python", "worker.py", name]
    assert services["worker-sagas"]["command"] == ["python", "worker.py", "sagas"]
    assert services["api"]["command"][:4] == ["python", "-m", "uvicorn", "api.app:create_app"]
    for sandbox, module in [
        ("psp", "sandboxes.psp"),
        ("carrier", "sandboxes.carrier"),
        ("smtp-sink", "sandboxes.smtp_sink"),
    ]:
        assert services[sandbox]["command"][:3] == ["python", "-m", module]
    assert {"postgres", "temporal", "temporal-ui", "migrate", "temporal-setup"} <= set(services)
    assert services["temporal"]["environment"]["DB"].startswith("postgres")  # PostgreSQL persistence


def test_environment_names_are_settings_and_parse(compose: dict[str, Any]) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    for name, service in compose["services"].items():
        if not (name.startswith("worker-") or name in {"api", "migrate", "psp", "carrier", "smtp-sink"}):
            continue
        env = _env(service)
        unknown = set(env) - fields
        assert not unknown, f"{name} sets variables the code does not read: {unknown}"
        parsed = Settings.model_validate({k.lower(): v for k, v in env.items()})  # valid settings
        assert parsed.temporal_address == "temporal:7233"


def test_each_worker_gets_only_its_own_database(compose: dict[str, Any]) -> None:
    for name in SERVICE_NAMES:
        env = _env(compose["services"][f"worker-{name}"])
        urls = {k: v for k, v in env.items() if k.endswith("_DATABASE_URL")}
        assert list(urls) == [f"{name.upper()}_DATABASE_URL"], f"worker-{name} must see only its own database"
        url = make_url(urls[f"{name.upper()}_DATABASE_URL"])
        assert (url.username, url.database, url.host) == (f"{name}_svc", f"{name}_db", "postgres")
        assert url.drivername == "postgresql+asyncpg"
    assert not any(k.endswith("_DATABASE_URL") for k in _env(compose["services"]["worker-sagas"]))


def test_sandbox_ports_match_the_urls_the_code_uses(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["api"])
    services = compose["services"]
    assert env["PSP_URL"].endswith(
        ":" + services["psp"]["command"][services["psp"]["command"].index("--port") + 1]
    )
    carrier_cmd = services["carrier"]["command"]
    assert env["CARRIER_URL"].endswith(":" + carrier_cmd[carrier_cmd.index("--port") + 1])
    smtp_cmd = services["smtp-sink"]["command"]
    assert env["SMTP_PORT"] == smtp_cmd[smtp_cmd.index("--smtp-port") + 1]


def test_search_attributes_registered_match_the_code(compose: dict[str, Any]) -> None:
    script = " ".join(compose["services"]["temporal-setup"]["command"])
    registered = dict(re.findall(r"(\w+)=(Keyword|Int|Bool|Text|Datetime|Double)", script))
    from core.temporal import search_attribute_cli_args

    expected = dict(arg.split("=") for arg in search_attribute_cli_args()[1::2])
    assert registered == expected
    assert len(expected) == len(SEARCH_ATTRIBUTES)
