"""Inputs and results of the discount service's operations (no tables here)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.discount.models import CouponType, PromotionType, RuleType, UsageStatus

CURRENCY = r"^[A-Z]{3}$"
MAX_AMOUNT = 10**12
CODE = r"^[A-Za-z0-9_-]+$"
MAX_LIMIT = 2**31 - 1  # INTEGER columns (usage limits, priority)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _check_value(kind: str, value: int, currency: str | None) -> None:
    if kind == "percentage" and not 1 <= value <= 100:
        raise ValueError("a percentage is 1..100")
    if kind == "fixed_amount" and (value <= 0 or currency is None):
        raise ValueError("a fixed amount is > 0 and needs a currency")
    if kind == "free_shipping" and value != 0:
        raise ValueError("free shipping has value 0")


class CouponIn(_In):
    code: str = Field(min_length=1, max_length=64, pattern=CODE)
    description: str | None = Field(default=None, max_length=2000)
    type: CouponType
    value: int = Field(ge=0, le=MAX_AMOUNT)
    currency: str | None = Field(default=None, pattern=CURRENCY)
    min_subtotal_amount: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    max_discount_amount: int | None = Field(default=None, gt=0, le=MAX_AMOUNT)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    usage_limit_total: int | None = Field(default=None, gt=0, le=MAX_LIMIT)
    usage_limit_per_customer: int | None = Field(default=None, gt=0, le=MAX_LIMIT)
    is_active: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> CouponIn:
        _check_value(self.type.value, self.value, self.currency)
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class CouponQuote(BaseModel):
    """What a coupon is worth for this subtotal (integer minor units, never above the subtotal)."""

    coupon_id: uuid.UUID
    code: str
    type: CouponType
    discount_amount: int
    free_shipping: bool


class Reservation(BaseModel):
    coupon_id: uuid.UUID
    code: str
    usage_id: uuid.UUID
    discount_amount: int
    free_shipping: bool
    status: UsageStatus
    expires_at: datetime


class Released(BaseModel):
    """``found`` false: the order holds no coupon usage (nothing to undo). ``released``: how many
    reservations were freed now (0 when they were released before)."""

    order_id: uuid.UUID
    found: bool
    released: int


class Committed(BaseModel):
    order_id: uuid.UUID
    coupon_id: uuid.UUID
    committed: bool  # false: it was committed before


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class MinSubtotalParams(_Params):
    amount: int = Field(ge=0, le=MAX_AMOUNT)


class CategoryParams(_Params):
    category_ids: list[uuid.UUID] = Field(min_length=1, max_length=200)


class ProductParams(_Params):
    product_ids: list[uuid.UUID] = Field(min_length=1, max_length=200)


class BuyXGetYParams(_Params):
    buy: int = Field(ge=1, le=1000)
    get: int = Field(ge=1, le=1000)


RULE_PARAMS: dict[RuleType, type[_Params]] = {
    RuleType.MIN_SUBTOTAL: MinSubtotalParams,
    RuleType.CATEGORY: CategoryParams,
    RuleType.PRODUCT: ProductParams,
    RuleType.BUY_X_GET_Y: BuyXGetYParams,
}


class RuleIn(_In):
    """``params`` by rule type: min_subtotal ``{"amount"}``, category ``{"category_ids"}``,
    product ``{"product_ids"}``, buy_x_get_y ``{"buy", "get"}``. Checked here, so a stored rule can
    always be evaluated (a malformed one would break every cart's promotion evaluation)."""

    rule_type: RuleType
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _params_fit_the_type(self) -> RuleIn:
        self.params = RULE_PARAMS[self.rule_type].model_validate(self.params).model_dump(mode="json")
        return self


class PromotionIn(_In):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    type: PromotionType
    value: int = Field(gt=0, le=MAX_AMOUNT)
    currency: str | None = Field(default=None, pattern=CURRENCY)
    max_discount_amount: int | None = Field(default=None, gt=0, le=MAX_AMOUNT)
    priority: int = Field(default=0, ge=-MAX_LIMIT, le=MAX_LIMIT)
    stackable: bool = False
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    is_active: bool = True
    rules: list[RuleIn] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _consistent(self) -> PromotionIn:
        _check_value(self.type.value, self.value, self.currency)
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class CartLineIn(_In):
    product_id: uuid.UUID
    category_ids: list[uuid.UUID] = Field(default_factory=list, max_length=50)
    unit_price_amount: int = Field(ge=0, le=MAX_AMOUNT)
    quantity: int = Field(gt=0, le=10_000)


class AppliedPromotion(BaseModel):
    promotion_id: uuid.UUID
    name: str
    discount_amount: int


class PromotionEvaluation(BaseModel):
    discount_amount: int
    applied: list[AppliedPromotion]


# -- administration views ------------------------------------------------------------------------------


class CouponView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    code: str
    description: str | None
    type: CouponType
    value: int
    currency: str | None
    min_subtotal_amount: int
    max_discount_amount: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    usage_limit_total: int | None
    usage_limit_per_customer: int | None
    times_used: int = Field(description="reserved + committed uses")
    is_active: bool
    created_at: datetime
    updated_at: datetime


class CouponPage(BaseModel):
    items: list[CouponView]
    next_cursor: str | None


class RuleView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    rule_type: RuleType
    params: dict[str, Any]


class PromotionView(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    type: PromotionType
    value: int
    currency: str | None
    max_discount_amount: int | None
    priority: int
    stackable: bool
    starts_at: datetime | None
    ends_at: datetime | None
    is_active: bool
    rules: list[RuleView]
    created_at: datetime
    updated_at: datetime
