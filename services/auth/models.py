"""Tables of ``auth_db``. Only the auth service reads or writes them.

Secrets never stored raw: passwords as argon2id hashes, refresh / reset / verification tokens as the
SHA-256 hex digest of the random token handed to the user (``token_hash``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CHAR,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import INET, JSONB, UUID
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from core.ledger import ledger_table


class AuthModel(SQLModel, registry=registry()):
    """Base class of every auth_db table; its metadata is what migrations/auth builds."""


metadata = AuthModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)


class UserStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class RoleName(StrEnum):
    CUSTOMER = "customer"
    SUPPORT = "support"
    ADMIN = "admin"


class RefreshTokenStatus(StrEnum):
    ACTIVE = "active"  # may be exchanged once
    ROTATED = "rotated"  # exchanged; presenting it again is reuse
    REVOKED = "revoked"  # logout, reuse of a family member, password reset


class RevokeReason(StrEnum):
    LOGOUT = "logout"
    REUSE_DETECTED = "reuse_detected"
    PASSWORD_RESET = "password_reset"
    USER_INACTIVE = "user_inactive"


class OneTimeTokenStatus(StrEnum):
    PENDING = "pending"
    USED = "used"
    SUPERSEDED = "superseded"  # a newer token of the same purpose was issued


class AuditEvent(StrEnum):
    USER_REGISTERED = "user_registered"
    USER_DELETED = "user_deleted"
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    LOGIN_BLOCKED = "login_blocked"  # refused by the rate limits or an account lock, password not checked
    ACCOUNT_LOCKED = "account_locked"
    PASSWORD_REHASHED = "password_rehashed"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"
    LOGOUT = "logout"
    EMAIL_VERIFICATION_ISSUED = "email_verification_issued"
    EMAIL_VERIFIED = "email_verified"
    PASSWORD_RESET_REQUESTED = "password_reset_requested"
    PASSWORD_RESET_COMPLETED = "password_reset_completed"
    ROLE_GRANTED = "role_granted"
    ROLE_REVOKED = "role_revoked"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


def _now_column(name: str) -> Any:
    return Column(name, DateTime(timezone=True), nullable=False, server_default=func.now())


class User(AuthModel, table=True):
    """An account: credentials, lock state and verification state. Profile data lives in user_db."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("status", UserStatus), name="ck_users_status"),
        CheckConstraint("failed_login_count >= 0", name="ck_users_failed_login_count"),
        # Emails are stored normalized, so the equality lookups below can use plain indexes.
        CheckConstraint("email = lower(btrim(email))", name="ck_users_email_normalized"),
        # Registration: "is this email taken?" (WHERE lower(email) = :email), and the uniqueness itself.
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
        # Login: "the active account with this email" (WHERE email = :email AND is_active) - the seed's index.
        Index("idx_users_active", "email", postgresql_where=text("is_active = true")),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    email: str = Field(sa_column=Column(String(320), nullable=False))
    password_hash: str = Field(sa_column=Column(String(255), nullable=False, comment="argon2id PHC string"))
    first_name: str = Field(sa_column=Column(String(100), nullable=False))
    last_name: str = Field(sa_column=Column(String(100), nullable=False))
    status: str = Field(sa_column=Column(String(20), nullable=False, server_default=UserStatus.ACTIVE.value))
    # Derived from status so the two can never disagree; exists for the seed's partial index.
    is_active: bool = Field(
        sa_column=Column(Boolean, Computed("status = 'active'", persisted=True), nullable=False)
    )
    email_verified_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    failed_login_count: int = Field(
        default=0,
        sa_column=Column(Integer, nullable=False, server_default="0", comment="consecutive failed logins"),
    )
    locked_until: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    last_login_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    password_changed_at: datetime | None = Field(default=None, sa_column=_now_column("password_changed_at"))
    created_at: datetime | None = Field(default=None, sa_column=_now_column("created_at"))
    updated_at: datetime | None = Field(default=None, sa_column=_now_column("updated_at"))


class Role(AuthModel, table=True):
    """RBAC roles; the migration seeds customer, support and admin."""

    __tablename__ = "roles"
    __table_args__ = (
        # Grant by name: WHERE name = :role (and uniqueness of the name).
        Index("uq_roles_name", "name", unique=True),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    name: str = Field(sa_column=Column(String(50), nullable=False))
    description: str = Field(sa_column=Column(String(255), nullable=False, server_default=""))
    created_at: datetime | None = Field(default=None, sa_column=_now_column("created_at"))


class UserRole(AuthModel, table=True):
    """Which user holds which role (PK serves "roles of a user")."""

    __tablename__ = "user_roles"
    __table_args__ = (
        PrimaryKeyConstraint("user_id", "role_id", name="pk_user_roles"),
        # "Who holds role X" (support/admin listings) and the FK check when a role is deleted.
        Index("ix_user_roles_role_id", "role_id"),
    )

    user_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    role_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("roles.id", ondelete="RESTRICT"), nullable=False)
    )
    granted_by: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    granted_at: datetime | None = Field(default=None, sa_column=_now_column("granted_at"))


class RefreshToken(AuthModel, table=True):
    """One refresh token of a login session (family). Rotation marks it ``rotated`` and links its successor."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        CheckConstraint(_in("status", RefreshTokenStatus), name="ck_refresh_tokens_status"),
        CheckConstraint(
            f"revoked_reason IS NULL OR {_in('revoked_reason', RevokeReason)}",
            name="ck_refresh_tokens_revoked_reason",
        ),
        # Refresh / logout: WHERE token_hash = :hash.
        Index("uq_refresh_tokens_token_hash", "token_hash", unique=True),
        # Revoke a whole family on reuse or logout: WHERE family_id = :family AND status = 'active'.
        Index("ix_refresh_tokens_family_id", "family_id"),
        # Revoke every session of a user (password reset) and the ON DELETE CASCADE from users.
        Index("ix_refresh_tokens_user_id", "user_id"),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    user_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    family_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), nullable=False, comment="one login session; shared by rotations")
    )
    token_hash: str = Field(sa_column=Column(CHAR(64), nullable=False, comment="sha256 hex of the token"))
    status: str = Field(
        sa_column=Column(String(20), nullable=False, server_default=RefreshTokenStatus.ACTIVE.value)
    )
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    rotated_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    replaced_by_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(
            UUID(as_uuid=True), ForeignKey("refresh_tokens.id", ondelete="SET NULL"), nullable=True
        ),
    )
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    revoked_reason: str | None = Field(default=None, sa_column=Column(String(30), nullable=True))
    ip: str | None = Field(default=None, sa_column=Column(INET, nullable=True))
    user_agent: str | None = Field(default=None, sa_column=Column(String(512), nullable=True))
    created_at: datetime | None = Field(default=None, sa_column=_now_column("created_at"))


class PasswordResetToken(AuthModel, table=True):
    """A single-use, expiring password reset token (hash only)."""

    __tablename__ = "password_reset_tokens"
    __table_args__ = (
        CheckConstraint(_in("status", OneTimeTokenStatus), name="ck_password_reset_tokens_status"),
        # Confirm: WHERE token_hash = :hash.
        Index("uq_password_reset_tokens_token_hash", "token_hash", unique=True),
        # Supersede a user's pending tokens on a new request, and the ON DELETE CASCADE from users.
        Index("ix_password_reset_tokens_user_id", "user_id"),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    user_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    token_hash: str = Field(sa_column=Column(CHAR(64), nullable=False, comment="sha256 hex of the token"))
    status: str = Field(
        sa_column=Column(String(20), nullable=False, server_default=OneTimeTokenStatus.PENDING.value)
    )
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    ip: str | None = Field(default=None, sa_column=Column(INET, nullable=True, comment="requested from"))
    created_at: datetime | None = Field(default=None, sa_column=_now_column("created_at"))


class EmailVerificationToken(AuthModel, table=True):
    """A single-use, expiring email verification token (hash only)."""

    __tablename__ = "email_verification_tokens"
    __table_args__ = (
        CheckConstraint(_in("status", OneTimeTokenStatus), name="ck_email_verification_tokens_status"),
        # Verify: WHERE token_hash = :hash.
        Index("uq_email_verification_tokens_token_hash", "token_hash", unique=True),
        # Supersede a user's pending tokens on re-issue, and the ON DELETE CASCADE from users.
        Index("ix_email_verification_tokens_user_id", "user_id"),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    user_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    token_hash: str = Field(sa_column=Column(CHAR(64), nullable=False, comment="sha256 hex of the token"))
    status: str = Field(
        sa_column=Column(String(20), nullable=False, server_default=OneTimeTokenStatus.PENDING.value)
    )
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    created_at: datetime | None = Field(default=None, sa_column=_now_column("created_at"))


class SecurityAuditLog(AuthModel, table=True):
    """Append-only security events, partitioned by month on created_at (children ``_pYYYY_MM``).

    ``user_id`` has no foreign key: the trail outlives a deleted account, and old months are dropped
    by partition, not by cascade.
    """

    __tablename__ = "security_audit_logs"
    __table_args__ = (
        PrimaryKeyConstraint("id", "created_at", name="pk_security_audit_logs"),
        CheckConstraint(_in("event_type", AuditEvent), name="ck_security_audit_logs_event_type"),
        # A user's security history (support, "recent activity"): WHERE user_id = :u ORDER BY created_at DESC.
        Index("ix_security_audit_logs_user_id_created_at", "user_id", "created_at"),
        # Monitoring by event (e.g. refresh reuse or lockouts in the last hour): WHERE event_type = :e AND created_at > :t.
        Index("ix_security_audit_logs_event_type_created_at", "event_type", "created_at"),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    created_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )
    user_id: uuid.UUID | None = Field(default=None, sa_column=Column(UUID(as_uuid=True), nullable=True))
    event_type: str = Field(sa_column=Column(String(40), nullable=False))
    ip: str | None = Field(default=None, sa_column=Column(INET, nullable=True))
    user_agent: str | None = Field(default=None, sa_column=Column(String(512), nullable=True))
    details: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    )


class RateLimit(AuthModel, table=True):
    """Fixed-window counters keyed by (scope, key), e.g. ("login_failed_account", email)."""

    __tablename__ = "rate_limits"
    __table_args__ = (
        PrimaryKeyConstraint("scope", "key", name="pk_rate_limits"),
        CheckConstraint("count >= 0", name="ck_rate_limits_count"),
        # Purge of stale counters: DELETE ... WHERE updated_at < :cutoff.
        Index("ix_rate_limits_updated_at", "updated_at"),
    )

    scope: str = Field(sa_column=Column(String(50), nullable=False))
    key: str = Field(sa_column=Column(String(320), nullable=False))
    window_start: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    count: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    updated_at: datetime | None = Field(default=None, sa_column=_now_column("updated_at"))
