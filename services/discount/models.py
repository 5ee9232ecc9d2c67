"""Tables of ``discount_db``. Only the discount service reads or writes them.

Coupon codes are stored upper case (``ck_coupons_code_upper``) and looked up upper-cased, which makes
them unique case-insensitively with a plain unique constraint. ``coupons.times_used`` counts the
usages that hold a slot (reserved + committed); ``ck_coupons_times_used`` makes the database itself
refuse a count above ``usage_limit_total``.
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
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from core.ledger import ledger_table


class DiscountModel(SQLModel, registry=registry()):
    """Base class of every discount_db table; its metadata is what migrations/discount builds."""


metadata = DiscountModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)


class CouponType(StrEnum):
    PERCENTAGE = "percentage"
    FIXED_AMOUNT = "fixed_amount"
    FREE_SHIPPING = "free_shipping"


class UsageStatus(StrEnum):
    RESERVED = "reserved"
    COMMITTED = "committed"
    RELEASED = "released"


class PromotionType(StrEnum):
    PERCENTAGE = "percentage"
    FIXED_AMOUNT = "fixed_amount"


class RuleType(StrEnum):
    MIN_SUBTOTAL = "min_subtotal"  # {"amount": 5000}
    CATEGORY = "category"  # {"category_ids": ["<uuid>", ...]}
    PRODUCT = "product"  # {"product_ids": ["<uuid>", ...]}
    BUY_X_GET_Y = "buy_x_get_y"  # {"buy": 2, "get": 1}: the discount applies to the cheapest free units


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


def _ts(nullable: bool = True, *, default_now: bool = False) -> Column[datetime]:
    return Column(
        DateTime(timezone=True), nullable=nullable, server_default=func.now() if default_now else None
    )


class Coupon(DiscountModel, table=True):
    __tablename__ = "coupons"
    __table_args__ = (
        # Lookup by code (validate, reserve): the unique constraint's index.
        UniqueConstraint("code", name="uq_coupons_code"),
        CheckConstraint("code = upper(code) AND length(code) > 0", name="ck_coupons_code_upper"),
        CheckConstraint(_in("type", CouponType), name="ck_coupons_type"),
        CheckConstraint(
            "(type = 'percentage' AND value BETWEEN 1 AND 100) OR (type = 'fixed_amount' AND value > 0) "
            "OR (type = 'free_shipping' AND value = 0)",
            name="ck_coupons_value",
        ),
        CheckConstraint("type <> 'fixed_amount' OR currency IS NOT NULL", name="ck_coupons_currency"),
        CheckConstraint("min_subtotal_amount >= 0", name="ck_coupons_min_subtotal"),
        CheckConstraint(
            "max_discount_amount IS NULL OR max_discount_amount > 0", name="ck_coupons_max_discount"
        ),
        CheckConstraint(
            "ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at", name="ck_coupons_window"
        ),
        CheckConstraint(
            "(usage_limit_total IS NULL OR usage_limit_total > 0) "
            "AND (usage_limit_per_customer IS NULL OR usage_limit_per_customer > 0)",
            name="ck_coupons_limits",
        ),
        CheckConstraint(
            "times_used >= 0 AND (usage_limit_total IS NULL OR times_used <= usage_limit_total)",
            name="ck_coupons_times_used",
        ),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    code: str = Field(sa_column=Column(String(64), nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text))
    type: str = Field(sa_column=Column(String(16), nullable=False))
    value: int = Field(
        sa_column=Column(
            BigInteger, nullable=False, comment="percent (1..100) or minor units; 0 for free shipping"
        )
    )
    currency: str | None = Field(default=None, sa_column=Column(CHAR(3)))
    min_subtotal_amount: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    max_discount_amount: int | None = Field(default=None, sa_column=Column(BigInteger))
    starts_at: datetime | None = Field(default=None, sa_column=_ts())
    ends_at: datetime | None = Field(default=None, sa_column=_ts())
    usage_limit_total: int | None = Field(default=None, sa_column=Column(Integer))
    usage_limit_per_customer: int | None = Field(default=None, sa_column=Column(Integer))
    times_used: int = Field(
        sa_column=Column(Integer, nullable=False, server_default=text("0"), comment="reserved + committed")
    )
    version: int = Field(sa_column=Column(Integer, nullable=False, server_default=text("1")))
    is_active: bool = Field(sa_column=Column(Boolean, nullable=False, server_default=text("true")))
    created_at: datetime = Field(sa_column=_ts(False, default_now=True))
    updated_at: datetime = Field(sa_column=_ts(False, default_now=True))


class CouponUsage(DiscountModel, table=True):
    __tablename__ = "coupon_usage"
    __table_args__ = (
        # One usage per coupon and order: a second reserve for the order finds the first.
        UniqueConstraint("coupon_id", "order_id", name="uq_coupon_usage_coupon_order"),
        CheckConstraint(_in("status", UsageStatus), name="ck_coupon_usage_status"),
        CheckConstraint("discount_amount >= 0", name="ck_coupon_usage_discount"),
        # Per-customer limit: a user's usages of a coupon that hold a slot.
        Index(
            "idx_coupon_usage_coupon_user",
            "coupon_id",
            "user_id",
            postgresql_where=text("status IN ('reserved', 'committed')"),
        ),
        # Release / commit by order id.
        Index("idx_coupon_usage_order", "order_id"),
        # The sweep of reservations past their expiry.
        Index("idx_coupon_usage_expiry", "expires_at", postgresql_where=text("status = 'reserved'")),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    coupon_id: uuid.UUID = Field(sa_column=Column(Uuid, ForeignKey("coupons.id"), nullable=False))
    user_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, comment="auth users.id"))
    order_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, comment="order_db orders.id"))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    discount_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    reserved_at: datetime = Field(sa_column=_ts(False, default_now=True))
    expires_at: datetime = Field(sa_column=_ts(False))
    committed_at: datetime | None = Field(default=None, sa_column=_ts())
    released_at: datetime | None = Field(default=None, sa_column=_ts())


class Promotion(DiscountModel, table=True):
    """An automatic discount: applies when all its rules hold, no code needed."""

    __tablename__ = "promotions"
    __table_args__ = (
        CheckConstraint(_in("type", PromotionType), name="ck_promotions_type"),
        CheckConstraint(
            "(type = 'percentage' AND value BETWEEN 1 AND 100) OR (type = 'fixed_amount' AND value > 0)",
            name="ck_promotions_value",
        ),
        CheckConstraint("type <> 'fixed_amount' OR currency IS NOT NULL", name="ck_promotions_currency"),
        CheckConstraint(
            "max_discount_amount IS NULL OR max_discount_amount > 0", name="ck_promotions_max_discount"
        ),
        CheckConstraint(
            "ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at", name="ck_promotions_window"
        ),
        # Evaluation loads the active promotions by priority.
        Index("idx_promotions_active_priority", "priority", postgresql_where=text("is_active")),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text))
    type: str = Field(sa_column=Column(String(16), nullable=False))
    value: int = Field(
        sa_column=Column(BigInteger, nullable=False, comment="percent (1..100) or minor units")
    )
    currency: str | None = Field(default=None, sa_column=Column(CHAR(3)))
    max_discount_amount: int | None = Field(default=None, sa_column=Column(BigInteger))
    priority: int = Field(sa_column=Column(Integer, nullable=False, server_default=text("0")))
    stackable: bool = Field(sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    starts_at: datetime | None = Field(default=None, sa_column=_ts())
    ends_at: datetime | None = Field(default=None, sa_column=_ts())
    is_active: bool = Field(sa_column=Column(Boolean, nullable=False, server_default=text("true")))
    created_at: datetime = Field(sa_column=_ts(False, default_now=True))
    updated_at: datetime = Field(sa_column=_ts(False, default_now=True))


class PromotionRule(DiscountModel, table=True):
    __tablename__ = "promotion_rules"
    __table_args__ = (
        CheckConstraint(_in("rule_type", RuleType), name="ck_promotion_rules_rule_type"),
        # The rules of the promotions being evaluated (and the foreign key).
        Index("idx_promotion_rules_promotion", "promotion_id"),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    promotion_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("promotions.id", ondelete="CASCADE"), nullable=False)
    )
    rule_type: str = Field(sa_column=Column(String(32), nullable=False))
    params: dict[str, Any] = Field(
        sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    )
    created_at: datetime = Field(sa_column=_ts(False, default_now=True))


class PromotionUsage(DiscountModel, table=True):
    __tablename__ = "promotion_usage"
    __table_args__ = (
        # One row per promotion and order (recording twice is a no-op); serves the foreign key too.
        UniqueConstraint("promotion_id", "order_id", name="uq_promotion_usage_promotion_order"),
        CheckConstraint("discount_amount >= 0", name="ck_promotion_usage_discount"),
        # The promotions applied to one order (order support view).
        Index("idx_promotion_usage_order", "order_id"),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    promotion_id: uuid.UUID = Field(sa_column=Column(Uuid, ForeignKey("promotions.id"), nullable=False))
    order_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, comment="order_db orders.id"))
    user_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, comment="auth users.id"))
    discount_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=_ts(False, default_now=True))
