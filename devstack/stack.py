"""The platform's processes as specs, built from one Settings object (the same one compose.yaml mirrors)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pydantic import SecretStr

from core.registry import SERVICE_NAMES
from core.settings import Settings
from devstack.supervisor import ProcSpec, python_argv
from devstack.temporal_cli import dev_server_args


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that make a child process read exactly these settings."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[name.upper()] = str(value)
    for name in ("jwt_secret", "encryption_key", "psp_webhook_secret", "carrier_webhook_secret"):
        env[name.upper()] = getattr(settings, name).get_secret_value()
    if settings.temporal_api_key is not None:
        env["TEMPORAL_API_KEY"] = settings.temporal_api_key.get_secret_value()
    return env


def _port(url: str) -> int:
    port = urlparse(url).port
    assert port is not None, url
    return port


def temporal_spec(cli: Path, settings: Settings, *, db_file: Path | None, ui: bool = True) -> ProcSpec:
    port = int(settings.temporal_address.rsplit(":", 1)[1])
    return ProcSpec(
        name="temporal",
        argv=[
            str(cli),
            *dev_server_args(
                db_file=db_file,
                port=port,
                ui_port=settings.temporal_ui_port if ui else None,
                namespace=settings.temporal_namespace,
            ),
        ],
        ready_port=port,
        ready_timeout_s=90,
    )


def sandbox_specs(settings: Settings, state_dir: Path | None) -> list[ProcSpec]:
    psp_port, carrier_port = _port(settings.psp_url), _port(settings.carrier_url)
    psp = python_argv("-m", "sandboxes.psp", "--host", "127.0.0.1", "--port", str(psp_port))
    carrier = python_argv("-m", "sandboxes.carrier", "--host", "127.0.0.1", "--port", str(carrier_port))
    if state_dir is not None:
        psp += ["--state-file", str(state_dir / "psp-state.json")]
        carrier += ["--state-file", str(state_dir / "carrier-state.json")]
    mail_port = _port(settings.mail_sink_url)
    smtp = python_argv(
        "-m", "sandboxes.smtp_sink", "--smtp-port", str(settings.smtp_port), "--http-port", str(mail_port)
    )
    return [
        ProcSpec("psp", psp, ready_url=f"{settings.psp_url}/healthz"),
        ProcSpec("carrier", carrier, ready_url=f"{settings.carrier_url}/healthz"),
        ProcSpec("smtp-sink", smtp, ready_url=f"{settings.mail_sink_url}/healthz"),
    ]


def worker_specs(
    settings: Settings, *, sagas_processes: int = 1, service_processes: int = 1
) -> list[ProcSpec]:
    specs = [
        ProcSpec(f"worker-{name}" + (f"-{i}" if i else ""), python_argv("worker.py", name))
        for name in SERVICE_NAMES
        for i in range(service_processes)
    ]
    specs += [
        ProcSpec("worker-sagas" + (f"-{i}" if i else ""), python_argv("worker.py", "sagas"))
        for i in range(sagas_processes)
    ]
    return specs


def api_spec(settings: Settings, *, workers: int = 1) -> ProcSpec:
    return ProcSpec(
        "api",
        python_argv(
            "-m",
            "uvicorn",
            "api.app:create_app",
            "--factory",
            "--host",
            settings.api_host,
            "--port",
            str(settings.api_port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--timeout-keep-alive",
            "30",
        ),
        ready_url=f"http://{settings.api_host}:{settings.api_port}/healthz",
    )
