"""Tables of ``notification_db``. Only the notification service reads or writes them.

``notifications`` is PARTITIONED BY RANGE (created_at), one child per month
(``notifications_pYYYY_MM``), created ahead of time by ``notification.ensure_partitions``. PostgreSQL
requires the partition key in every unique constraint, so the primary key is ``(id, created_at)``
and ``UNIQUE (idempotency_key, created_at)`` is the most the table itself can promise: it does NOT
stop the same key in two different months. Exactly-once per key is guaranteed by the ledger
(``idempotency_keys``), written in the same transaction that marks a notification sent or
suppressed; the notification's id is derived from its key (uuid5), so a retry finds its row by id.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from core.ledger import ledger_table


class NotificationModel(SQLModel, registry=registry()):
    """Base class of every notification_db table; its metadata is what migrations/notification builds."""


metadata = NotificationModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)

PARTITIONED_TABLE = "notifications"


class Channel(StrEnum):
    EMAIL = "email"


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


class Category(StrEnum):
    """What kind of mail a template sends; preferences are per category."""

    SECURITY = "security"  # verification, password reset: always sent, not a preference
    TRANSACTIONAL = "transactional"  # order confirmed, payment failed, return approved, refund issued
    ORDER_UPDATES = "order_updates"  # shipped, delivered
    MARKETING = "marketing"  # opt-in


class AttemptStatus(StrEnum):
    SENT = "sent"
    TEMPFAIL = "tempfail"
    PERMFAIL = "permfail"


EDITABLE_CATEGORIES = (Category.TRANSACTIONAL, Category.ORDER_UPDATES, Category.MARKETING)


def _in(values: Any) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _now() -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class Notification(NotificationModel, table=True):
    """One message to one recipient, and what became of it."""

    __tablename__ = "notifications"
    __table_args__ = (
        # the most uniqueness partitioning allows; the ledger is what dedupes keys (see module doc)
        UniqueConstraint("idempotency_key", "created_at", name="uq_notifications_idempotency_key_created"),
        CheckConstraint(f"channel IN ({_in(Channel)})", name="ck_notifications_channel"),
        CheckConstraint(f"status IN ({_in(NotificationStatus)})", name="ck_notifications_status"),
        CheckConstraint(f"category IN ({_in(Category)})", name="ck_notifications_category"),
        CheckConstraint("attempts >= 0", name="ck_notifications_attempts"),
        # a user's notifications, newest first (support, "my notifications")
        Index("ix_notifications_user_created", "user_id", "created_at"),
        # operations: undelivered mails (pending or failed) by age
        Index(
            "ix_notifications_undelivered",
            "status",
            "created_at",
            postgresql_where=text("status IN ('pending', 'failed')"),
        ),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    # uuid5 of the idempotency key: a retried send finds its row by id (one PK probe per partition)
    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), primary_key=True, server_default=func.now()),
    )
    user_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid, nullable=True, comment="auth_db users.id")
    )
    channel: str = Field(
        default=Channel.EMAIL, sa_column=Column(String(20), nullable=False, server_default=text("'email'"))
    )
    event_type: str = Field(sa_column=Column(String(100), nullable=False))
    category: str = Field(sa_column=Column(String(30), nullable=False))
    recipient: str = Field(sa_column=Column(String(320), nullable=False))
    subject: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    status: str = Field(
        default=NotificationStatus.PENDING,
        sa_column=Column(String(20), nullable=False, server_default=text("'pending'")),
    )
    idempotency_key: str = Field(sa_column=Column(String(255), nullable=False))
    template_key: str = Field(sa_column=Column(String(100), nullable=False))
    locale: str = Field(sa_column=Column(String(10), nullable=False))
    template_version: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    context: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    )
    message_id: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))
    sent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    updated_at: datetime | None = _now()


class EmailTemplate(NotificationModel, table=True):
    """A Jinja2 template (subject, text, optional HTML) for one event in one locale."""

    __tablename__ = "email_templates"
    __table_args__ = (
        # template lookup by key and locale
        UniqueConstraint("key", "locale", name="uq_email_templates_key_locale"),
        CheckConstraint(f"category IN ({_in(Category)})", name="ck_email_templates_category"),
        CheckConstraint("version > 0", name="ck_email_templates_version"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))
    key: str = Field(sa_column=Column(String(100), nullable=False))
    locale: str = Field(
        default="en", sa_column=Column(String(10), nullable=False, server_default=text("'en'"))
    )
    category: str = Field(sa_column=Column(String(30), nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    subject_template: str = Field(sa_column=Column(Text, nullable=False))
    text_template: str = Field(sa_column=Column(Text, nullable=False))
    html_template: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default=text("1")))
    is_active: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, server_default=text("true"))
    )
    created_at: datetime | None = _now()
    updated_at: datetime | None = _now()


class NotificationPreference(NotificationModel, table=True):
    """A user's choice for one category on one channel (no row: the category's default)."""

    __tablename__ = "notification_preferences"
    __table_args__ = (
        # a user's preferences; the upsert target
        UniqueConstraint(
            "user_id", "category", "channel", name="uq_notification_preferences_user_category_channel"
        ),
        CheckConstraint(
            f"category IN ({_in(EDITABLE_CATEGORIES)})", name="ck_notification_preferences_category"
        ),
        CheckConstraint(f"channel IN ({_in(Channel)})", name="ck_notification_preferences_channel"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))
    user_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, comment="auth_db users.id"))
    category: str = Field(sa_column=Column(String(30), nullable=False))
    channel: str = Field(
        default=Channel.EMAIL, sa_column=Column(String(20), nullable=False, server_default=text("'email'"))
    )
    enabled: bool = Field(sa_column=Column(Boolean, nullable=False))
    created_at: datetime | None = _now()
    updated_at: datetime | None = _now()


class NotificationLog(NotificationModel, table=True):
    """One delivery attempt of a notification (committed even when the attempt fails)."""

    __tablename__ = "notification_logs"
    __table_args__ = (
        ForeignKeyConstraint(
            ["notification_id", "notification_created_at"],
            ["notifications.id", "notifications.created_at"],
            name="fk_notification_logs_notification",
            ondelete="CASCADE",
        ),
        CheckConstraint("attempt > 0", name="ck_notification_logs_attempt"),
        CheckConstraint(f"status IN ({_in(AttemptStatus)})", name="ck_notification_logs_status"),
        # the attempts of one notification, in order (and the FK lookup)
        Index("ix_notification_logs_notification", "notification_id", "notification_created_at", "attempt"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))
    notification_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    notification_created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    status: str = Field(sa_column=Column(String(20), nullable=False))
    smtp_response: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime | None = _now()
