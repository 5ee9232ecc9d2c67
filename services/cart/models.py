"""Tables of ``cart_db``. Only the cart service reads or writes them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from core.ledger import ledger_table


class CartModel(SQLModel, registry=registry()):
    """Base class of every cart_db table; its metadata is what migrations/cart builds."""


metadata = CartModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)

MAX_ITEM_QUANTITY = 99


class CartStatus(StrEnum):
    ACTIVE = "active"  # the shopper edits it
    LOCKED = "locked"  # a checkout workflow holds it (semantic lock, locked_by = workflow id)
    CONVERTED = "converted"  # became an order
    ABANDONED = "abandoned"  # expired unused
    MERGED = "merged"  # a guest cart folded into a user's cart at login


# Statuses of the one "current" cart a user may have.
OPEN_STATUSES = (CartStatus.ACTIVE.value, CartStatus.LOCKED.value)


def _in(values: type[StrEnum]) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


def _timestamp() -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class Cart(CartModel, table=True):
    """A shopper's cart, owned by a user (``user_id``) or by a guest token (only its SHA-256 stored)."""

    __tablename__ = "carts"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(CartStatus)})", name="ck_carts_status"),
        CheckConstraint("user_id IS NOT NULL OR guest_token_hash IS NOT NULL", name="ck_carts_owner"),
        CheckConstraint("status <> 'locked' OR locked_by IS NOT NULL", name="ck_carts_locked_by"),
        CheckConstraint("version >= 1", name="ck_carts_version"),
        # get-or-create of a user's cart; at most one active-or-locked cart per user
        Index(
            "uq_carts_user_open",
            "user_id",
            unique=True,
            postgresql_where=text("status IN ('active', 'locked')"),
        ),
        # get-or-create of a guest cart by the hash of its token
        Index(
            "uq_carts_guest_token_hash",
            "guest_token_hash",
            unique=True,
            postgresql_where=text("guest_token_hash IS NOT NULL"),
        ),
        # abandonment sweep: active carts past expires_at
        Index("ix_carts_active_expiry", "expires_at", postgresql_where=text("status = 'active'")),
        # foreign key: carts merged into a cart
        Index("ix_carts_merged_into", "merged_into_cart_id"),
    )

    id: uuid.UUID = Field(
        default_factory=uuid.uuid4, sa_column=Column(PG_UUID(as_uuid=True), primary_key=True)
    )
    user_id: uuid.UUID | None = Field(default=None, sa_column=Column(PG_UUID(as_uuid=True), nullable=True))
    guest_token_hash: str | None = Field(default=None, sa_column=Column(CHAR(64), nullable=True))
    status: str = Field(
        default=CartStatus.ACTIVE.value,
        sa_column=Column(String(20), nullable=False, server_default=CartStatus.ACTIVE.value),
    )
    currency: str = Field(sa_column=Column(CHAR(3), nullable=False))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    locked_by: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    locked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    order_id: uuid.UUID | None = Field(default=None, sa_column=Column(PG_UUID(as_uuid=True), nullable=True))
    merged_into_cart_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(PG_UUID(as_uuid=True), ForeignKey("carts.id", ondelete="SET NULL"), nullable=True),
    )
    expires_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime | None = _timestamp()
    updated_at: datetime | None = _timestamp()


class CartItem(CartModel, table=True):
    """A line of a cart; the unit price is a snapshot taken when the item was (last) added."""

    __tablename__ = "cart_items"
    __table_args__ = (
        # the items of a cart (leading column); adding the same variant again increments this line
        UniqueConstraint("cart_id", "variant_id", name="uq_cart_items_cart_variant"),
        CheckConstraint(f"quantity BETWEEN 1 AND {MAX_ITEM_QUANTITY}", name="ck_cart_items_quantity"),
        CheckConstraint("unit_price_amount >= 0", name="ck_cart_items_unit_price_amount"),
    )

    id: uuid.UUID = Field(
        default_factory=uuid.uuid4, sa_column=Column(PG_UUID(as_uuid=True), primary_key=True)
    )
    cart_id: uuid.UUID = Field(
        sa_column=Column(PG_UUID(as_uuid=True), ForeignKey("carts.id", ondelete="CASCADE"), nullable=False)
    )
    variant_id: uuid.UUID = Field(sa_column=Column(PG_UUID(as_uuid=True), nullable=False))
    product_id: uuid.UUID = Field(sa_column=Column(PG_UUID(as_uuid=True), nullable=False))
    quantity: int = Field(sa_column=Column(Integer, nullable=False))
    unit_price_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(sa_column=Column(CHAR(3), nullable=False))
    added_at: datetime | None = _timestamp()
    updated_at: datetime | None = _timestamp()


def _table(model: type[CartModel]) -> Table:
    t = model.__table__  # type: ignore[attr-defined]
    assert isinstance(t, Table)
    return t


carts = _table(Cart)
cart_items = _table(CartItem)
