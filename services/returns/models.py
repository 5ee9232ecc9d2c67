"""Tables of ``return_db``. Only the return service reads or writes them.

Cross-service references (``return_requests.order_id`` / ``user_id``, ``return_items.order_item_id`` /
``variant_id``, ``refunds.payment_id``) are plain UUID columns without foreign keys.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import CHAR, JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from core.ledger import ledger_table


class ReturnModel(SQLModel, registry=registry()):
    """Base class of every return_db table; its metadata is what migrations/return builds."""


metadata = ReturnModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)


class ReturnStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    AWAITING_PARCEL = "awaiting_parcel"
    RECEIVED = "received"
    INSPECTED = "inspected"
    REFUNDED = "refunded"
    CLOSED = "closed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class ReturnReason(StrEnum):
    DEFECTIVE = "defective"
    DAMAGED = "damaged"  # arrived damaged
    WRONG_ITEM = "wrong_item"
    NOT_AS_DESCRIBED = "not_as_described"
    NO_LONGER_NEEDED = "no_longer_needed"
    CHANGED_MIND = "changed_mind"
    OTHER = "other"


class ItemCondition(StrEnum):
    NEW = "new"
    OPENED = "opened"
    DAMAGED = "damaged"


class Resolution(StrEnum):
    REFUND = "refund"


class AuthorizationStatus(StrEnum):
    ACTIVE = "active"
    USED = "used"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# The request's summary reason: the items' common reason, or "multiple".
REQUEST_REASONS = (*ReturnReason, "multiple")


def _in(values: Any) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _id() -> Any:
    return Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))


def _ts(*, nullable: bool = True, now: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=Column(
            DateTime(timezone=True), nullable=nullable, server_default=func.now() if now else None
        ),
    )


class ReturnRequest(ReturnModel, table=True):
    """A shopper's request to return items of one order, and its progress."""

    __tablename__ = "return_requests"
    __table_args__ = (
        UniqueConstraint("rma_number", name="uq_return_requests_rma_number"),
        CheckConstraint(f"status IN ({_in(ReturnStatus)})", name="ck_return_requests_status"),
        CheckConstraint(f"reason IN ({_in(REQUEST_REASONS)})", name="ck_return_requests_reason"),
        CheckConstraint(f"resolution IN ({_in(Resolution)})", name="ck_return_requests_resolution"),
        CheckConstraint(
            "requested_amount >= 0 AND (refund_amount IS NULL OR refund_amount >= 0)",
            name="ck_return_requests_amounts",
        ),
        # quantity accounting (returns of one order) and support lookup by order
        Index("ix_return_requests_order_id", "order_id"),
        # "my returns", newest first
        Index("ix_return_requests_user_requested", "user_id", "requested_at"),
        # support queue: open returns by status and age
        Index(
            "ix_return_requests_open_status",
            "status",
            "requested_at",
            postgresql_where=text("status NOT IN ('rejected', 'closed', 'expired', 'cancelled')"),
        ),
    )

    id: uuid.UUID = _id()
    order_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, comment="order_db orders.id"))
    user_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, comment="auth_db users.id"))
    rma_number: str = Field(sa_column=Column(String(32), nullable=False))
    status: str = Field(
        default=ReturnStatus.REQUESTED,
        sa_column=Column(String(20), nullable=False, server_default=text("'requested'")),
    )
    reason: str = Field(sa_column=Column(String(30), nullable=False))
    resolution: str = Field(
        default=Resolution.REFUND,
        sa_column=Column(String(20), nullable=False, server_default=text("'refund'")),
    )
    currency: str = Field(sa_column=Column(CHAR(3), nullable=False))
    requested_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    refund_amount: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    refund_breakdown: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    # The order as the caller passed it (items, prices, allocated discounts, shipping, payment id).
    order_snapshot: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    auto_approved: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    requested_at: datetime | None = _ts(nullable=False, now=True)
    decided_at: datetime | None = _ts()
    decided_by: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    decision_note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    received_at: datetime | None = _ts()
    inspected_at: datetime | None = _ts()
    workflow_id: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default=text("1")))
    created_at: datetime | None = _ts(nullable=False, now=True)
    updated_at: datetime | None = _ts(nullable=False, now=True)


class ReturnItem(ReturnModel, table=True):
    """One order line in a return: what was asked for, and what inspection accepted."""

    __tablename__ = "return_items"
    __table_args__ = (
        # one row per order line in a return; also serves the FK lookup by return_request_id
        UniqueConstraint("return_request_id", "order_item_id", name="uq_return_items_request_order_item"),
        CheckConstraint("quantity_requested > 0", name="ck_return_items_quantity_requested"),
        CheckConstraint(
            "quantity_accepted IS NULL OR (quantity_accepted >= 0 AND quantity_accepted <= quantity_requested)",
            name="ck_return_items_quantity_accepted",
        ),
        CheckConstraint(
            f"condition IS NULL OR condition IN ({_in(ItemCondition)})", name="ck_return_items_condition"
        ),
        CheckConstraint(f"reason IN ({_in(ReturnReason)})", name="ck_return_items_reason"),
        CheckConstraint(
            "unit_price_amount >= 0 AND (refund_amount IS NULL OR refund_amount >= 0)"
            " AND (discount_share_amount IS NULL OR discount_share_amount >= 0)",
            name="ck_return_items_amounts",
        ),
    )

    id: uuid.UUID = _id()
    return_request_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("return_requests.id", ondelete="CASCADE"), nullable=False)
    )
    order_item_id: uuid.UUID = Field(
        sa_column=Column(Uuid, nullable=False, comment="order_db order_items.id")
    )
    variant_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid, nullable=True, comment="product_db product_variants.id")
    )
    reason: str = Field(sa_column=Column(String(30), nullable=False))
    quantity_requested: int = Field(sa_column=Column(Integer, nullable=False))
    quantity_accepted: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    condition: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))
    unit_price_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    discount_share_amount: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    refund_amount: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: datetime | None = _ts(nullable=False, now=True)


class ReturnAuthorization(ReturnModel, table=True):
    """The RMA: the return label the shopper ships with, valid until ``expires_at``."""

    __tablename__ = "return_authorizations"
    __table_args__ = (
        UniqueConstraint("return_request_id", name="uq_return_authorizations_return_request_id"),
        # carrier webhooks for a return parcel: find the return by its label's tracking number
        UniqueConstraint("label_tracking_number", name="uq_return_authorizations_label_tracking_number"),
        CheckConstraint(f"status IN ({_in(AuthorizationStatus)})", name="ck_return_authorizations_status"),
    )

    id: uuid.UUID = _id()
    return_request_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("return_requests.id", ondelete="CASCADE"), nullable=False)
    )
    rma_code: str = Field(sa_column=Column(String(32), nullable=False))
    label_tracking_number: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    label_url: str | None = Field(default=None, sa_column=Column(String(1000), nullable=True))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    status: str = Field(
        default=AuthorizationStatus.ACTIVE,
        sa_column=Column(String(20), nullable=False, server_default=text("'active'")),
    )
    created_at: datetime | None = _ts(nullable=False, now=True)
    updated_at: datetime | None = _ts(nullable=False, now=True)


class ReturnStatusHistory(ReturnModel, table=True):
    """Every status change of a return, with who made it and why."""

    __tablename__ = "return_status_history"
    __table_args__ = (
        # a return's history in order
        Index("ix_return_status_history_request_created", "return_request_id", "created_at"),
    )

    id: uuid.UUID = _id()
    return_request_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("return_requests.id", ondelete="CASCADE"), nullable=False)
    )
    from_status: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    to_status: str = Field(sa_column=Column(String(20), nullable=False))
    actor: str = Field(sa_column=Column(String(255), nullable=False))
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
    )


class ReturnTracking(ReturnModel, table=True):
    """Carrier events of the return parcel; the carrier's event id dedupes redelivered webhooks."""

    __tablename__ = "return_tracking"
    __table_args__ = (
        UniqueConstraint("carrier_event_id", name="uq_return_tracking_carrier_event_id"),
        # tracking history of a return, in order
        Index("ix_return_tracking_request_occurred", "return_request_id", "occurred_at"),
    )

    id: uuid.UUID = _id()
    return_request_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("return_requests.id", ondelete="CASCADE"), nullable=False)
    )
    carrier_event_id: str = Field(sa_column=Column(String(200), nullable=False))
    status: str = Field(sa_column=Column(String(30), nullable=False))
    location: str | None = Field(default=None, sa_column=Column(String(300), nullable=True))
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    received_at: datetime | None = _ts(nullable=False, now=True)


class Refund(ReturnModel, table=True):
    """A refund of a return through the payment service, as that service reported it."""

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("provider_refund_id", name="uq_refunds_provider_refund_id"),
        CheckConstraint(f"status IN ({_in(RefundStatus)})", name="ck_refunds_status"),
        CheckConstraint("amount > 0", name="ck_refunds_amount"),
        # refunds of a return (sum of succeeded refunds)
        Index("ix_refunds_return_request_id", "return_request_id"),
    )

    id: uuid.UUID = _id()
    return_request_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("return_requests.id", ondelete="CASCADE"), nullable=False)
    )
    payment_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, comment="payment_db payments.id"))
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(sa_column=Column(CHAR(3), nullable=False))
    status: str = Field(sa_column=Column(String(20), nullable=False))
    provider_refund_id: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    # items, discount share and shipping that make up the amount
    breakdown: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    )
    created_at: datetime | None = _ts(nullable=False, now=True)
    updated_at: datetime | None = _ts(nullable=False, now=True)
