"""Pydantic models of the return service's operations (inputs validated before anything is written)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

CURRENCY_PATTERN = r"^[A-Z]{3}$"
MAX_AMOUNT = 10**12

ReturnReasonName = Literal[
    "defective", "damaged", "wrong_item", "not_as_described", "no_longer_needed", "changed_mind", "other"
]
ConditionName = Literal["new", "opened", "damaged"]
ReturnStatusName = Literal[
    "requested",
    "approved",
    "rejected",
    "awaiting_parcel",
    "received",
    "inspected",
    "refunded",
    "closed",
    "expired",
    "cancelled",
]
RefundStatusName = Literal["pending", "succeeded", "failed"]


class OrderItemSnapshot(BaseModel):
    """One order line as the order service reports it (``order.get``'s items fit: ``id`` is accepted)."""

    model_config = ConfigDict(extra="ignore")

    order_item_id: uuid.UUID = Field(validation_alias=AliasChoices("order_item_id", "id"))
    variant_id: uuid.UUID | None = None
    product_id: uuid.UUID | None = None
    sku: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=255)
    quantity: int = Field(gt=0, le=10_000, description="units bought")
    unit_price_amount: int = Field(ge=0, le=MAX_AMOUNT)
    discount_amount: int = Field(default=0, ge=0, le=MAX_AMOUNT, description="discount allocated to the line")

    @model_validator(mode="after")
    def _discount_fits(self) -> OrderItemSnapshot:
        if self.discount_amount > self.unit_price_amount * self.quantity:
            raise ValueError("discount_amount exceeds the line amount")
        return self


class OrderSnapshot(BaseModel):
    """What the return rules need of the order; passed in by the caller (no cross-service reads)."""

    model_config = ConfigDict(extra="ignore")

    order_id: uuid.UUID = Field(validation_alias=AliasChoices("order_id", "id"))
    user_id: uuid.UUID
    order_number: str | None = Field(default=None, max_length=64)
    status: str | None = Field(default=None, max_length=40)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    delivered_at: datetime | None
    shipping_amount: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    payment_id: uuid.UUID | None = None
    items: list[OrderItemSnapshot] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _unique_items(self) -> OrderSnapshot:
        ids = [i.order_item_id for i in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("order items must not repeat")
        return self


class ReturnLineIn(BaseModel):
    order_item_id: uuid.UUID
    quantity: int = Field(gt=0, le=10_000)
    reason: ReturnReasonName


class InspectionLineIn(BaseModel):
    order_item_id: uuid.UUID
    quantity_accepted: int = Field(ge=0, le=10_000)
    condition: ConditionName


class RestockLine(BaseModel):
    variant_id: uuid.UUID
    quantity: int


class RefundLine(BaseModel):
    order_item_id: uuid.UUID
    variant_id: uuid.UUID | None
    quantity: int
    unit_price_amount: int
    gross_amount: int
    discount_share_amount: int
    refund_amount: int


class RefundBreakdown(BaseModel):
    """How a refund amount is made: items at their price minus their discount share, plus shipping."""

    items: list[RefundLine]
    items_amount: int = Field(description="sum of the lines' gross amounts")
    discount_share_amount: int
    shipping_amount: int
    total_amount: int
    currency: str


class ItemView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    order_item_id: uuid.UUID
    variant_id: uuid.UUID | None
    reason: str
    quantity_requested: int
    quantity_accepted: int | None
    condition: str | None
    unit_price_amount: int
    discount_share_amount: int | None
    refund_amount: int | None


class AuthorizationView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    rma_code: str
    label_tracking_number: str | None
    label_url: str | None
    expires_at: datetime
    status: str


class HistoryView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_status: str | None
    to_status: str
    actor: str
    note: str | None
    created_at: datetime


class RefundView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    payment_id: uuid.UUID
    amount: int
    currency: str
    status: str
    provider_refund_id: str | None
    created_at: datetime


class ReturnView(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID
    rma_number: str
    status: ReturnStatusName
    reason: str
    resolution: str
    currency: str
    requested_amount: int
    refund_amount: int | None
    auto_approved: bool
    requested_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_note: str | None
    received_at: datetime | None
    inspected_at: datetime | None
    workflow_id: str | None
    version: int
    items: list[ItemView]
    authorization: AuthorizationView | None
    history: list[HistoryView]
    refunds: list[RefundView]
