"""auth_db: initial schema

Revision ID: 0001
Revises:
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from core.partitions import monthly_partitions_ddl

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Fixed ids, so every environment has the same role ids.
SEED_ROLES = (
    (uuid.UUID("7d1c5e3a-0000-4000-8000-000000000001"), "customer", "Shops: cart, checkout, own orders"),
    (uuid.UUID("7d1c5e3a-0000-4000-8000-000000000002"), "support", "Support staff: orders, returns, parked sagas"),
    (uuid.UUID("7d1c5e3a-0000-4000-8000-000000000003"), "admin", "Administrators: catalog, pricing, users"),
)

AUDIT_EVENTS = (
    "user_registered", "user_deleted", "login_succeeded", "login_failed", "login_blocked",
    "account_locked", "password_rehashed", "refresh_token_reused", "logout",
    "email_verification_issued", "email_verified", "password_reset_requested",
    "password_reset_completed", "role_granted", "role_revoked",
)


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _now(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(255), primary_key=True, comment="<workflow id>:<step> or a client key"),
        sa.Column("operation", sa.String(100), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("result", postgresql.JSONB(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        comment="Idempotency ledger: one row per writing operation key, written with its effect",
    )

    op.create_table(
        "users",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False, comment="argon2id PHC string"),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        sa.Column("is_active", sa.Boolean(), sa.Computed("status = 'active'", persisted=True), nullable=False),
        _ts("email_verified_at"),
        sa.Column(
            "failed_login_count", sa.Integer(), nullable=False, server_default="0",
            comment="consecutive failed logins",
        ),
        _ts("locked_until"),
        _ts("last_login_at"),
        _now("password_changed_at"),
        _now("created_at"),
        _now("updated_at"),
        sa.CheckConstraint(_in("status", ("active", "suspended")), name="ck_users_status"),
        sa.CheckConstraint("failed_login_count >= 0", name="ck_users_failed_login_count"),
        sa.CheckConstraint("email = lower(btrim(email))", name="ck_users_email_normalized"),
    )
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
    op.create_index("idx_users_active", "users", ["email"], postgresql_where=sa.text("is_active = true"))

    roles = op.create_table(
        "roles",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("description", sa.String(255), nullable=False, server_default=""),
        _now("created_at"),
    )
    op.create_index("uq_roles_name", "roles", ["name"], unique=True)
    op.bulk_insert(roles, [{"id": i, "name": n, "description": d} for i, n, d in SEED_ROLES])

    op.create_table(
        "user_roles",
        sa.Column("user_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("role_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("roles.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("granted_by", postgresql.UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        _now("granted_at"),
        sa.PrimaryKeyConstraint("user_id", "role_id", name="pk_user_roles"),
    )
    op.create_index("ix_user_roles_role_id", "user_roles", ["role_id"])

    op.create_table(
        "refresh_tokens",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("family_id", postgresql.UUID(as_uuid=True), nullable=False, comment="one login session; shared by rotations"),
        sa.Column("token_hash", sa.CHAR(64), nullable=False, comment="sha256 hex of the token"),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        _ts("expires_at", nullable=False),
        _ts("rotated_at"),
        sa.Column(
            "replaced_by_id", postgresql.UUID(as_uuid=True),
            sa.ForeignKey("refresh_tokens.id", ondelete="SET NULL"), nullable=True,
        ),
        _ts("revoked_at"),
        sa.Column("revoked_reason", sa.String(30), nullable=True),
        sa.Column("ip", postgresql.INET(), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        _now("created_at"),
        sa.CheckConstraint(_in("status", ("active", "rotated", "revoked")), name="ck_refresh_tokens_status"),
        sa.CheckConstraint(
            "revoked_reason IS NULL OR "
            + _in("revoked_reason", ("logout", "reuse_detected", "password_reset", "user_inactive")),
            name="ck_refresh_tokens_revoked_reason",
        ),
    )
    op.create_index("uq_refresh_tokens_token_hash", "refresh_tokens", ["token_hash"], unique=True)
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"])
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"])

    for table, extra in (
        ("password_reset_tokens", [sa.Column("ip", postgresql.INET(), nullable=True, comment="requested from")]),
        ("email_verification_tokens", []),
    ):
        op.create_table(
            table,
            sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
            sa.Column("user_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
            sa.Column("token_hash", sa.CHAR(64), nullable=False, comment="sha256 hex of the token"),
            sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
            _ts("expires_at", nullable=False),
            _ts("used_at"),
            *extra,
            _now("created_at"),
            sa.CheckConstraint(_in("status", ("pending", "used", "superseded")), name=f"ck_{table}_status"),
        )
        op.create_index(f"uq_{table}_token_hash", table, ["token_hash"], unique=True)
        op.create_index(f"ix_{table}_user_id", table, ["user_id"])

    op.create_table(
        "security_audit_logs",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("ip", postgresql.INET(), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("details", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.PrimaryKeyConstraint("id", "created_at", name="pk_security_audit_logs"),
        sa.CheckConstraint(_in("event_type", AUDIT_EVENTS), name="ck_security_audit_logs_event_type"),
        postgresql_partition_by="RANGE (created_at)",
    )
    op.create_index(
        "ix_security_audit_logs_user_id_created_at", "security_audit_logs", ["user_id", "created_at"]
    )
    op.create_index(
        "ix_security_audit_logs_event_type_created_at", "security_audit_logs", ["event_type", "created_at"]
    )
    # Month boundaries are midnight UTC whatever the server's TimeZone (also in auth.ensure_partitions).
    op.execute("SET LOCAL TimeZone = 'UTC'")
    for ddl in monthly_partitions_ddl("security_audit_logs", datetime.now(UTC).date()):
        op.execute(ddl)

    op.create_table(
        "rate_limits",
        sa.Column("scope", sa.String(50), nullable=False),
        sa.Column("key", sa.String(320), nullable=False),
        _ts("window_start", nullable=False),
        sa.Column("count", sa.Integer(), nullable=False, server_default="0"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("scope", "key", name="pk_rate_limits"),
        sa.CheckConstraint("count >= 0", name="ck_rate_limits_count"),
    )
    op.create_index("ix_rate_limits_updated_at", "rate_limits", ["updated_at"])


def downgrade() -> None:
    op.drop_table("rate_limits")
    op.drop_table("security_audit_logs")  # drops its monthly partitions with it
    op.drop_table("email_verification_tokens")
    op.drop_table("password_reset_tokens")
    op.drop_table("refresh_tokens")
    op.drop_table("user_roles")
    op.drop_table("roles")
    op.drop_table("users")
    op.drop_table("idempotency_keys")
