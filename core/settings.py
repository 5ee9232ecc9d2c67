"""One settings class for every process, read from the environment (and an optional ``.env`` file).

Every service's database URL, the Temporal connection (address, namespace, TLS, API key), the
secrets and the sandbox addresses live here. In development every value has a working default; with
``APP_ENV=production`` the development defaults of secrets and database passwords are refused at
start, so a forgotten variable fails loudly instead of shipping a known key.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.registry import SERVICE_NAMES, service

ROOT = Path(__file__).resolve().parent.parent

# Development defaults. Each one is refused outside development (see _refuse_dev_secrets).
DEV_JWT_SECRET = "dev-only-jwt-secret-0000000000000000000000000000"
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMDAwMDAwMDA="  # Fernet key, development only
DEV_PSP_WEBHOOK_SECRET = "dev-only-psp-webhook-secret"
DEV_CARRIER_WEBHOOK_SECRET = "dev-only-carrier-webhook-secret"


def dev_db_password(service_name: str) -> str:
    return f"{service_name}-dev-password"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    app_env: Literal["development", "test", "production"] = "development"
    data_dir: Path = ROOT / "var"

    # --- PostgreSQL -------------------------------------------------------------------------
    # Where the service databases live when no per-service URL is given.
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 55432
    # A superuser URL of an existing server. Unset: `make up` creates and runs a local cluster.
    postgres_admin_url: str | None = None
    # Per-service URLs (AUTH_DATABASE_URL, ...). Unset: derived from host/port and the dev role.
    auth_database_url: str | None = None
    user_database_url: str | None = None
    product_database_url: str | None = None
    order_database_url: str | None = None
    payment_database_url: str | None = None
    notification_database_url: str | None = None
    cart_database_url: str | None = None
    discount_database_url: str | None = None
    shipping_database_url: str | None = None
    return_database_url: str | None = None
    db_pool_size: int = Field(default=5, ge=1, le=200)
    db_max_overflow: int = Field(default=5, ge=0, le=200)
    db_connect_timeout_s: float = Field(default=3.0, gt=0)

    # --- Temporal ---------------------------------------------------------------------------
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_tls: bool = False
    temporal_tls_ca_path: Path | None = None
    temporal_tls_cert_path: Path | None = None
    temporal_tls_key_path: Path | None = None
    temporal_api_key: SecretStr | None = None
    temporal_ui_port: int = 8233
    # Where support opens the Web UI (linked from alert mails); default: the dev server's UI port.
    temporal_ui_url: str | None = None
    # Path of a temporal CLI binary to use instead of the one on PATH or the cached build.
    temporal_cli_path: Path | None = None

    # --- HTTP edge and sandboxes -------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    psp_url: str = "http://127.0.0.1:8101"
    carrier_url: str = "http://127.0.0.1:8102"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    mail_sink_url: str = "http://127.0.0.1:8025"
    readyz_timeout_s: float = Field(default=4.0, gt=0, le=30)
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    api_db_pool_size: int = Field(default=3, ge=1, le=100)
    # Catalog search (GET /v1/products): a token bucket per client (user, else address), per process.
    api_search_rate_per_s: float = Field(default=10, gt=0, le=10_000)
    api_search_burst: int = Field(default=30, ge=1, le=100_000)

    # --- Sagas (durations are settings so tests run them in seconds) -------------------------
    public_base_url: str | None = None  # where providers send webhooks; default http://API_HOST:API_PORT
    capture_immediately: bool = False  # else capture on the carrier's first scan
    start_shipping: bool = True  # a confirmed checkout starts the shipping saga
    reservation_ttl_s: int = Field(default=1800, ge=30)
    payment_action_timeout_s: float = Field(default=900, gt=0)
    authorization_ttl_s: float = Field(default=7 * 24 * 3600, gt=0)
    refund_window_s: float = Field(default=90 * 24 * 3600, gt=0)
    saga_activity_timeout_s: float = Field(default=30, gt=0)
    saga_step_attempts: int = Field(default=5, ge=1)
    saga_compensation_attempts: int = Field(default=10, ge=1)
    saga_compensation_max_interval_s: float = Field(default=60, gt=0)
    api_workflow_wait_s: float = Field(default=10, gt=0, le=60)  # the API never blocks longer
    return_window_days: int = Field(default=30, ge=0)
    maintenance_interval_s: float = Field(default=300, ge=10)  # expiry sweeps (reservations, carts)
    # A saga that needs support (parked for a decision, a stalled shipment, an escalated return...)
    # mails this address, besides NeedsAttention in the Web UI and GET /v1/support/sagas. Empty: none.
    support_alert_email: str = Field(
        default="support@sagashop.test", max_length=320, pattern=r"^([^@\s]+@[^@\s]+)?$"
    )
    # Retention of the time-partitioned logs, in whole months before the current one (0: keep all).
    # The daily partition-maintenance workflow drops older monthly partitions. order_status_history
    # has none: it is part of the order, kept as long as the order.
    audit_log_retention_months: int = Field(default=13, ge=0, le=1200)  # security_audit_logs
    notification_retention_months: int = Field(default=13, ge=0, le=1200)  # notifications + their logs
    # Shipping saga: stall timers (support is alerted) and the label purchase budget.
    shipping_no_pickup_s: float = Field(default=2 * 24 * 3600, gt=0)
    shipping_no_movement_s: float = Field(default=3 * 24 * 3600, gt=0)
    shipping_label_attempts: int = Field(default=20, ge=1)
    # Return saga: approve automatically under this amount (minor units; unset: support decides every
    # return), escalate an undecided return after the timeout, RMA validity for handing the parcel over.
    return_auto_approve_under_amount: int | None = Field(default=5000, ge=0)
    return_decision_timeout_s: float = Field(default=2 * 24 * 3600, gt=0)
    return_rma_ttl_s: float = Field(default=14 * 24 * 3600, gt=0)
    # The shop's web front end, for links in emails (verify email, reset password); default the API.
    public_web_url: str | None = None
    password_reset_cooldown_s: float = Field(default=60, ge=0)  # at most one reset mail per email per this

    # --- Secrets ----------------------------------------------------------------------------
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    encryption_key: SecretStr = SecretStr(DEV_ENCRYPTION_KEY)
    psp_webhook_secret: SecretStr = SecretStr(DEV_PSP_WEBHOOK_SECRET)
    carrier_webhook_secret: SecretStr = SecretStr(DEV_CARRIER_WEBHOOK_SECRET)

    @model_validator(mode="after")
    def _refuse_dev_secrets(self) -> Settings:
        if self.app_env != "production":
            return self
        problems = [
            name.upper()
            for name, dev in (
                ("jwt_secret", DEV_JWT_SECRET),
                ("encryption_key", DEV_ENCRYPTION_KEY),
                ("psp_webhook_secret", DEV_PSP_WEBHOOK_SECRET),
                ("carrier_webhook_secret", DEV_CARRIER_WEBHOOK_SECRET),
            )
            if getattr(self, name).get_secret_value() == dev
        ]
        for name in SERVICE_NAMES:
            url = getattr(self, f"{name}_database_url")
            if url is None or dev_db_password(name) in url:
                problems.append(f"{name.upper()}_DATABASE_URL")
        if problems:
            raise ValueError(
                "APP_ENV=production refuses development defaults; set these to real values: "
                + ", ".join(problems)
            )
        return self

    def database_url(self, service_name: str) -> str:
        """The SQLAlchemy (asyncpg) URL with which service ``service_name`` reaches its own database."""
        info = service(service_name)
        explicit: str | None = getattr(self, f"{info.name}_database_url")
        if explicit:
            return explicit
        return (
            f"postgresql+asyncpg://{info.role}:{dev_db_password(info.name)}"
            f"@{self.postgres_host}:{self.postgres_port}/{info.database}"
        )

    @property
    def webhook_base_url(self) -> str:
        return self.public_base_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def web_ui_url(self) -> str:
        host = self.temporal_address.rsplit(":", 1)[0]
        return (self.temporal_ui_url or f"http://{host}:{self.temporal_ui_port}").rstrip("/")

    @property
    def web_base_url(self) -> str:
        return (self.public_web_url or self.webhook_base_url).rstrip("/")

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings; a bad value stops the process with a readable message."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()]
        sys.stderr.write("configuration error:\n" + "\n".join(lines) + "\n")
        raise SystemExit(2) from None
