"""Tables of ``order_db``. Only the order service reads or writes them.

``orders`` is PARTITIONED BY HASH (user_id) into 8 children (``orders_p0`` .. ``orders_p7``), so a
user's orders live in one partition. Its primary key is ``(id, user_id)`` because PostgreSQL requires
the partition key in every unique constraint: global uniqueness of ``id`` comes from uuid4 generation
(the checkout workflow chooses it), and a lookup by ``id`` alone uses ``idx_orders_id``, which exists
on each partition (8 index probes instead of a pruned one). ``order_number`` is unique by
construction (one shared sequence), not by a constraint, for the same reason.

``order_status_history`` is PARTITIONED BY RANGE (created_at), one child per month
(``order_status_history_pYYYY_MM``), created ahead of time by ``order.ensure_partitions``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    Sequence,
    String,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from core.ledger import ledger_table


class OrderModel(SQLModel, registry=registry()):
    """Base class of every order_db table; its metadata is what migrations/order builds."""


metadata = OrderModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)

# Human-readable order numbers (SO-2026-000123); shared by all partitions, hence globally unique.
order_number_seq = Sequence("order_number_seq", metadata=metadata)


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    FAILED = "failed"
    RETURNED = "returned"
    PARTIALLY_RETURNED = "partially_returned"
    REFUNDED = "refunded"


class NoteVisibility(StrEnum):
    INTERNAL = "internal"
    CUSTOMER = "customer"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


def _ts(nullable: bool = True, *, default_now: bool = False) -> Column[datetime]:
    return Column(
        DateTime(timezone=True), nullable=nullable, server_default=func.now() if default_now else None
    )


class Order(OrderModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(_in("status", OrderStatus), name="ck_orders_status"),
        CheckConstraint(
            "subtotal_amount >= 0 AND discount_amount >= 0 AND shipping_amount >= 0 "
            "AND tax_amount >= 0 AND total_amount >= 0",
            name="ck_orders_amounts_non_negative",
        ),
        CheckConstraint("discount_amount <= subtotal_amount", name="ck_orders_discount_le_subtotal"),
        CheckConstraint(
            "total_amount = subtotal_amount - discount_amount + shipping_amount + tax_amount",
            name="ck_orders_total",
        ),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_orders_currency"),
        # A user's orders, optionally by status (GET /v1/orders?status=..., the seed's composite index).
        Index("idx_orders_user_status", "user_id", "status"),
        # A user's orders newest first with cursor pagination (GET /v1/orders).
        Index("idx_orders_user_placed", "user_id", "placed_at", "id"),
        # Lookup by id alone (support, payment/shipping callbacks): one probe per partition.
        Index("idx_orders_id", "id"),
        # Support lookup by order number (SO-2026-000123).
        Index("idx_orders_order_number", "order_number"),
        # Support lookup by status, oldest first (stuck pending_payment orders ...).
        Index("idx_orders_status_placed", "status", "placed_at"),
        {"postgresql_partition_by": "HASH (user_id)"},
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    user_id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True, comment="auth users.id (no FK)"))
    order_number: str = Field(sa_column=Column(String(32), nullable=False))
    cart_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, comment="cart_db carts.id"))
    coupon_code: str | None = Field(
        default=None, sa_column=Column(String(64), comment="discount_db coupons.code")
    )
    status: str = Field(sa_column=Column(String(32), nullable=False))
    failure_reason: str | None = Field(default=None, sa_column=Column(Text))
    currency: str = Field(sa_column=Column(CHAR(3), nullable=False))
    subtotal_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    discount_amount: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    shipping_amount: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    tax_amount: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    total_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    payment_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid, comment="payment_db payments.id")
    )
    shipment_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid, comment="shipping_db shipments.id")
    )
    workflow_id: str | None = Field(default=None, sa_column=Column(String(255)))
    version: int = Field(sa_column=Column(Integer, nullable=False, server_default=text("1")))
    placed_at: datetime = Field(sa_column=_ts(False, default_now=True))
    confirmed_at: datetime | None = Field(default=None, sa_column=_ts())
    shipped_at: datetime | None = Field(default=None, sa_column=_ts())
    delivered_at: datetime | None = Field(default=None, sa_column=_ts())
    cancelled_at: datetime | None = Field(default=None, sa_column=_ts())
    failed_at: datetime | None = Field(default=None, sa_column=_ts())
    created_at: datetime = Field(sa_column=_ts(False, default_now=True))
    updated_at: datetime = Field(sa_column=_ts(False, default_now=True))


class OrderItem(OrderModel, table=True):
    __tablename__ = "order_items"
    __table_args__ = (
        ForeignKeyConstraint(
            ["order_id", "order_user_id"],
            ["orders.id", "orders.user_id"],
            name="fk_order_items_order",
            ondelete="CASCADE",
        ),
        CheckConstraint("quantity > 0", name="ck_order_items_quantity"),
        CheckConstraint("unit_price_amount >= 0", name="ck_order_items_unit_price"),
        CheckConstraint("line_amount = unit_price_amount * quantity", name="ck_order_items_line_amount"),
        CheckConstraint(
            "discount_amount >= 0 AND discount_amount <= line_amount", name="ck_order_items_discount"
        ),
        CheckConstraint(
            "returned_quantity >= 0 AND returned_quantity <= quantity", name="ck_order_items_returned"
        ),
        # The items of an order (order view, returns) and the composite foreign key.
        Index("idx_order_items_order", "order_id", "order_user_id"),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    order_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    order_user_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    line_no: int = Field(sa_column=Column(Integer, nullable=False))
    product_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, comment="product_db products.id"))
    variant_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid, comment="product_db product_variants.id")
    )
    sku: str = Field(sa_column=Column(String(64), nullable=False))
    name: str = Field(sa_column=Column(String(255), nullable=False, comment="snapshot at order time"))
    unit_price_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    quantity: int = Field(sa_column=Column(Integer, nullable=False))
    line_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    discount_amount: int = Field(
        sa_column=Column(BigInteger, nullable=False, server_default=text("0"), comment="allocated share")
    )
    returned_quantity: int = Field(sa_column=Column(Integer, nullable=False, server_default=text("0")))
    created_at: datetime = Field(sa_column=_ts(False, default_now=True))


class OrderStatusHistory(OrderModel, table=True):
    __tablename__ = "order_status_history"
    __table_args__ = (
        ForeignKeyConstraint(
            ["order_id", "order_user_id"],
            ["orders.id", "orders.user_id"],
            name="fk_order_status_history_order",
            ondelete="CASCADE",
        ),
        CheckConstraint(_in("to_status", OrderStatus), name="ck_order_status_history_to_status"),
        # The history of one order in time order (order view, support timeline).
        Index("idx_order_status_history_order", "order_id", "created_at"),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    created_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), primary_key=True, server_default=func.now())
    )
    order_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    order_user_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    from_status: str | None = Field(default=None, sa_column=Column(String(32)))
    to_status: str = Field(sa_column=Column(String(32), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(Text))
    actor: str = Field(sa_column=Column(String(100), nullable=False, comment="system, workflow id, user"))


class ShippingAddress(OrderModel, table=True):
    """The delivery address as it was when the order was placed (one per order)."""

    __tablename__ = "shipping_addresses"
    __table_args__ = (
        ForeignKeyConstraint(
            ["order_id", "user_id"],
            ["orders.id", "orders.user_id"],
            name="fk_shipping_addresses_order",
            ondelete="CASCADE",
        ),
        CheckConstraint("country_code ~ '^[A-Z]{2}$'", name="ck_shipping_addresses_country"),
        # One snapshot per order; serves the order view's address lookup and the foreign key.
        Index("uq_shipping_addresses_order", "order_id", "user_id", unique=True),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    order_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    user_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    recipient_name: str = Field(sa_column=Column(String(200), nullable=False))
    company: str | None = Field(default=None, sa_column=Column(String(200)))
    line1: str = Field(sa_column=Column(String(255), nullable=False))
    line2: str | None = Field(default=None, sa_column=Column(String(255)))
    city: str = Field(sa_column=Column(String(120), nullable=False))
    region: str | None = Field(default=None, sa_column=Column(String(120)))
    postal_code: str = Field(sa_column=Column(String(20), nullable=False))
    country_code: str = Field(sa_column=Column(CHAR(2), nullable=False))
    phone: str | None = Field(default=None, sa_column=Column(String(40)))
    created_at: datetime = Field(sa_column=_ts(False, default_now=True))


class OrderNote(OrderModel, table=True):
    __tablename__ = "order_notes"
    __table_args__ = (
        ForeignKeyConstraint(
            ["order_id", "order_user_id"],
            ["orders.id", "orders.user_id"],
            name="fk_order_notes_order",
            ondelete="CASCADE",
        ),
        CheckConstraint(_in("visibility", NoteVisibility), name="ck_order_notes_visibility"),
        # The notes of one order in time order (support view; customer view filters visibility).
        Index("idx_order_notes_order", "order_id", "created_at"),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    order_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    order_user_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False))
    author_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, comment="auth users.id"))
    visibility: str = Field(sa_column=Column(String(16), nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=_ts(False, default_now=True))
