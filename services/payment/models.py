"""Tables of ``payment_db``. Only the payment service reads or writes them.

``payments`` is PARTITIONED BY HASH (order_id) into 8 children (``payments_p0`` .. ``payments_p7``);
its primary key is ``(id, order_id)`` because a unique constraint must include the partition key.
Global uniqueness of ``id`` comes from uuid4 generation (the saga chooses it); a lookup by ``id`` alone
uses ``idx_payments_id`` on each partition. Every other table refers to a payment by the pair.

``payment_transactions`` is the ledger of money movements: per payment,
``sum(capture) - sum(refund)`` over succeeded rows equals ``amount_captured - amount_refunded``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
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


class PaymentModel(SQLModel, registry=registry()):
    """Base class of every payment_db table; its metadata is what migrations/payment builds."""


metadata = PaymentModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)


class PaymentStatus(StrEnum):
    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    AUTHORIZED = "authorized"
    PARTIALLY_CAPTURED = "partially_captured"
    CAPTURED = "captured"
    VOIDED = "voided"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    FAILED = "failed"
    EXPIRED = "expired"


class TransactionType(StrEnum):
    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"


class TransactionStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


def _ts(nullable: bool = True, *, default_now: bool = False) -> Column[datetime]:
    return Column(
        DateTime(timezone=True), nullable=nullable, server_default=func.now() if default_now else None
    )


def _payment_fk(table: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["payment_id", "order_id"], ["payments.id", "payments.order_id"], name=f"fk_{table}_payment"
    )


class Payment(PaymentModel, table=True):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(_in("status", PaymentStatus), name="ck_payments_status"),
        CheckConstraint("amount_authorized > 0", name="ck_payments_amount_authorized"),
        CheckConstraint(
            "amount_captured >= 0 AND amount_captured <= amount_authorized",
            name="ck_payments_amount_captured",
        ),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount_captured", name="ck_payments_amount_refunded"
        ),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_payments_currency"),
        # Lookup by payment id alone (payment.get without order, support): one probe per partition.
        Index("idx_payments_id", "id"),
        # Webhooks name the provider's authorization: find its payment.
        Index("idx_payments_provider_authorization", "provider_authorization_id"),
        # A user's payments, newest first (support, /v1/me views).
        Index("idx_payments_user_created", "user_id", "created_at"),
        # The authorization-expiry sweep: open authorizations by expiry time.
        Index(
            "idx_payments_open_expiry",
            "authorization_expires_at",
            postgresql_where=text("status IN ('authorized', 'requires_action')"),
        ),
        {"postgresql_partition_by": "HASH (order_id)"},
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    order_id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True, comment="order_db orders.id"))
    user_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, comment="auth users.id"))
    provider: str = Field(sa_column=Column(String(32), nullable=False, server_default=text("'psp_sandbox'")))
    provider_authorization_id: str | None = Field(default=None, sa_column=Column(String(100)))
    status: str = Field(sa_column=Column(String(32), nullable=False))
    amount_authorized: int = Field(
        sa_column=Column(BigInteger, nullable=False, comment="the amount asked for authorization")
    )
    amount_captured: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    amount_refunded: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    currency: str = Field(sa_column=Column(CHAR(3), nullable=False))
    decline_code: str | None = Field(default=None, sa_column=Column(String(64)))
    next_action_url: str | None = Field(
        default=None, sa_column=Column(Text, comment="where the shopper finishes requires_action")
    )
    authorization_expires_at: datetime | None = Field(default=None, sa_column=_ts())
    idempotency_key: str = Field(
        sa_column=Column(String(255), nullable=False, comment="the authorize step's idempotency key")
    )
    version: int = Field(sa_column=Column(Integer, nullable=False, server_default=text("1")))
    authorized_at: datetime | None = Field(default=None, sa_column=_ts())
    captured_at: datetime | None = Field(default=None, sa_column=_ts())
    voided_at: datetime | None = Field(default=None, sa_column=_ts())
    created_at: datetime = Field(sa_column=_ts(False, default_now=True))
    updated_at: datetime = Field(sa_column=_ts(False, default_now=True))


class PaymentTransaction(PaymentModel, table=True):
    """One money movement (or attempt) at the provider; append-only."""

    __tablename__ = "payment_transactions"
    __table_args__ = (
        _payment_fk("payment_transactions"),
        CheckConstraint(_in("type", TransactionType), name="ck_payment_transactions_type"),
        CheckConstraint(_in("status", TransactionStatus), name="ck_payment_transactions_status"),
        CheckConstraint("amount >= 0", name="ck_payment_transactions_amount"),
        # One ledger row per provider object and kind: a replayed provider answer is not booked twice.
        UniqueConstraint(
            "payment_id", "type", "provider_reference", name="uq_payment_transactions_provider_reference"
        ),
        # The ledger of one payment (payment view, balance) and the composite foreign key.
        Index("idx_payment_transactions_payment", "payment_id", "order_id", "created_at"),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    payment_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    order_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    type: str = Field(sa_column=Column(String(16), nullable=False))
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(sa_column=Column(CHAR(3), nullable=False))
    provider_reference: str | None = Field(
        default=None, sa_column=Column(String(100), comment="authorization or refund id at the provider")
    )
    status: str = Field(sa_column=Column(String(16), nullable=False))
    error_code: str | None = Field(default=None, sa_column=Column(String(64)))
    idempotency_key: str | None = Field(default=None, sa_column=Column(String(255)))
    created_at: datetime = Field(sa_column=_ts(False, default_now=True))


class Refund(PaymentModel, table=True):
    __tablename__ = "refunds"
    __table_args__ = (
        _payment_fk("refunds"),
        CheckConstraint(_in("status", RefundStatus), name="ck_refunds_status"),
        CheckConstraint("amount > 0", name="ck_refunds_amount"),
        # The refunds of one payment (payment view) and the composite foreign key.
        Index("idx_refunds_payment", "payment_id", "order_id"),
        # The refunds of one return (return service asks by its return id).
        Index("idx_refunds_return", "return_id", postgresql_where=text("return_id IS NOT NULL")),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    payment_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    order_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(sa_column=Column(CHAR(3), nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    provider_refund_id: str | None = Field(default=None, sa_column=Column(String(100)))
    return_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid, comment="return_db return_requests.id")
    )
    idempotency_key: str = Field(sa_column=Column(String(255), nullable=False))
    created_at: datetime = Field(sa_column=_ts(False, default_now=True))
    completed_at: datetime | None = Field(default=None, sa_column=_ts())


class PaymentMethod(PaymentModel, table=True):
    """A user's card at the provider: only the provider's token (Fernet-encrypted) and display data."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        CheckConstraint("last4 ~ '^[0-9]{4}$'", name="ck_payment_methods_last4"),
        CheckConstraint("exp_month BETWEEN 1 AND 12", name="ck_payment_methods_exp_month"),
        # A user's saved cards (checkout, /v1/me/payment-methods).
        Index("idx_payment_methods_user", "user_id", "created_at"),
        # The same card saved twice by one user is one row.
        Index(
            "uq_payment_methods_user_fingerprint",
            "user_id",
            "provider",
            "fingerprint",
            unique=True,
            postgresql_where=text("fingerprint IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    user_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, comment="auth users.id"))
    provider: str = Field(sa_column=Column(String(32), nullable=False, server_default=text("'psp_sandbox'")))
    token_encrypted: str = Field(
        sa_column=Column(Text, nullable=False, comment="Fernet(settings.encryption_key)")
    )
    brand: str = Field(sa_column=Column(String(32), nullable=False))
    last4: str = Field(sa_column=Column(CHAR(4), nullable=False))
    exp_month: int = Field(sa_column=Column(SmallInteger, nullable=False))
    exp_year: int = Field(sa_column=Column(SmallInteger, nullable=False))
    fingerprint: str | None = Field(default=None, sa_column=Column(String(64)))
    is_default: bool = Field(sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    created_at: datetime = Field(sa_column=_ts(False, default_now=True))
    updated_at: datetime = Field(sa_column=_ts(False, default_now=True))


class PaymentWebhook(PaymentModel, table=True):
    """Every provider event received; a second delivery of one event id is ignored."""

    __tablename__ = "payment_webhooks"
    __table_args__ = (
        _payment_fk("payment_webhooks"),
        UniqueConstraint("provider", "provider_event_id", name="uq_payment_webhooks_event"),
        # The events of one payment (support view) and the composite foreign key.
        Index(
            "idx_payment_webhooks_payment",
            "payment_id",
            "order_id",
            postgresql_where=text("payment_id IS NOT NULL"),
        ),
        # Events still to process or that failed (reprocessing job, support).
        Index(
            "idx_payment_webhooks_unprocessed", "received_at", postgresql_where=text("processed_at IS NULL")
        ),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    provider: str = Field(sa_column=Column(String(32), nullable=False, server_default=text("'psp_sandbox'")))
    provider_event_id: str = Field(sa_column=Column(String(100), nullable=False))
    event_type: str = Field(sa_column=Column(String(64), nullable=False))
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    signature_valid: bool = Field(sa_column=Column(Boolean, nullable=False))
    payment_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid))
    order_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid))
    received_at: datetime = Field(sa_column=_ts(False, default_now=True))
    processed_at: datetime | None = Field(default=None, sa_column=_ts())
    processing_error: str | None = Field(default=None, sa_column=Column(Text))
