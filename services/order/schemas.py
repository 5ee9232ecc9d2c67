"""Inputs and views of the order service's operations (no tables here)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.order.models import NoteVisibility, OrderStatus

CURRENCY = r"^[A-Z]{3}$"
MAX_AMOUNT = 10**12  # minor units; far above any real order, far below BIGINT


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrderLineIn(_In):
    product_id: uuid.UUID
    variant_id: uuid.UUID | None = None
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=255)
    unit_price_amount: int = Field(ge=0, le=MAX_AMOUNT)
    quantity: int = Field(gt=0, le=10_000)


class AddressIn(_In):
    recipient_name: str = Field(min_length=1, max_length=200)
    company: str | None = Field(default=None, max_length=200)
    line1: str = Field(min_length=1, max_length=255)
    line2: str | None = Field(default=None, max_length=255)
    city: str = Field(min_length=1, max_length=120)
    region: str | None = Field(default=None, max_length=120)
    postal_code: str = Field(min_length=1, max_length=20)
    country_code: str = Field(pattern=r"^[A-Z]{2}$")
    phone: str | None = Field(default=None, max_length=40)


class NewOrder(_In):
    """Everything an order is created from; the checkout workflow chooses ``order_id``."""

    order_id: uuid.UUID
    user_id: uuid.UUID
    cart_id: uuid.UUID | None = None
    workflow_id: str | None = Field(default=None, max_length=255)
    currency: str = Field(pattern=CURRENCY)
    lines: list[OrderLineIn] = Field(min_length=1, max_length=200)
    subtotal_amount: int = Field(ge=0, le=MAX_AMOUNT)
    discount_amount: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    shipping_amount: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    tax_amount: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    total_amount: int = Field(ge=0, le=MAX_AMOUNT)
    coupon_code: str | None = Field(default=None, min_length=1, max_length=64)
    shipping_address: AddressIn


class ReturnLineIn(_In):
    order_item_id: uuid.UUID
    quantity: int = Field(gt=0, le=10_000)


# -- results and views ---------------------------------------------------------------------------


class CreatedOrder(BaseModel):
    order_id: uuid.UUID
    order_number: str
    status: OrderStatus


class StatusChange(BaseModel):
    """The outcome of a status operation. ``changed`` is false when the order already had the status
    (or, for ``fail``, when there is no such order: ``found`` false)."""

    order_id: uuid.UUID
    found: bool = True
    status: OrderStatus | None
    previous_status: OrderStatus | None
    changed: bool
    version: int | None


class ReturnedItem(BaseModel):
    order_item_id: uuid.UUID
    returned_quantity: int
    returnable_quantity: int


class ReturnRecorded(BaseModel):
    order_id: uuid.UUID
    status: OrderStatus
    items: list[ReturnedItem]


class OrderItemView(BaseModel):
    id: uuid.UUID
    line_no: int
    product_id: uuid.UUID
    variant_id: uuid.UUID | None
    sku: str
    name: str
    unit_price_amount: int
    quantity: int
    line_amount: int
    discount_amount: int
    returned_quantity: int
    returnable_quantity: int


class AddressView(BaseModel):
    recipient_name: str
    company: str | None
    line1: str
    line2: str | None
    city: str
    region: str | None
    postal_code: str
    country_code: str
    phone: str | None


class HistoryEntry(BaseModel):
    from_status: OrderStatus | None
    to_status: OrderStatus
    reason: str | None
    actor: str
    created_at: datetime


class NoteView(BaseModel):
    id: uuid.UUID
    author_id: uuid.UUID | None
    visibility: NoteVisibility
    body: str
    created_at: datetime


class OrderSummary(BaseModel):
    id: uuid.UUID
    order_number: str
    user_id: uuid.UUID
    status: OrderStatus
    currency: str
    total_amount: int
    placed_at: datetime


class OrderView(OrderSummary):
    cart_id: uuid.UUID | None
    coupon_code: str | None
    failure_reason: str | None
    subtotal_amount: int
    discount_amount: int
    shipping_amount: int
    tax_amount: int
    payment_id: uuid.UUID | None
    shipment_id: uuid.UUID | None
    workflow_id: str | None
    version: int
    confirmed_at: datetime | None
    shipped_at: datetime | None
    delivered_at: datetime | None
    cancelled_at: datetime | None
    failed_at: datetime | None
    items: list[OrderItemView]
    shipping_address: AddressView | None
    history: list[HistoryEntry]


class OrderPage(BaseModel):
    orders: list[OrderSummary]
    next_cursor: str | None


class PartitionsEnsured(BaseModel):
    created: list[str]
    existing: list[str]
