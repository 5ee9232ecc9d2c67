"""Inputs and outputs of the cart service's operations (validated before anything is written)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.cart.models import MAX_ITEM_QUANTITY

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Quantity = Annotated[int, Field(ge=1, le=MAX_ITEM_QUANTITY)]
Version = Annotated[int, Field(ge=1)]
WorkflowId = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AddItem(_In):
    """Add ``quantity`` of a variant at the price the caller just read from the product service."""

    variant_id: uuid.UUID
    product_id: uuid.UUID
    quantity: Quantity
    unit_price_amount: Annotated[int, Field(ge=0, le=10**12)]
    currency: Currency
    expected_version: Version | None = None  # optimistic concurrency; None: last writer wins


class UpdateItem(_In):
    quantity: Quantity
    expected_version: Version | None = None


class CartItemView(BaseModel):
    id: uuid.UUID
    variant_id: uuid.UUID
    product_id: uuid.UUID
    quantity: int
    unit_price_amount: int
    currency: str
    line_amount: int
    added_at: datetime


class CartView(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID | None
    status: str
    currency: str
    version: int
    locked_by: str | None
    expires_at: datetime | None
    items: list[CartItemView]
    item_count: int  # units
    subtotal_amount: int  # at the prices snapshotted when the items were added


class GuestCart(BaseModel):
    cart: CartView
    guest_token: str | None  # the raw token, only when this call created the cart; only its hash is stored


class MergeResult(BaseModel):
    cart: CartView
    merged_lines: int
    skipped_variant_ids: list[uuid.UUID]  # priced in another currency than the user's cart


class LockedItem(BaseModel):
    variant_id: uuid.UUID
    product_id: uuid.UUID
    quantity: int
    unit_price_amount: int


class LockedCart(BaseModel):
    cart_id: uuid.UUID
    version: int
    currency: str
    items: list[LockedItem]


class UnlockResult(BaseModel):
    cart_id: uuid.UUID
    status: str
    unlocked: bool  # False: it was not locked by this workflow (nothing to do)


class ConvertResult(BaseModel):
    cart_id: uuid.UUID
    status: str
    order_id: uuid.UUID
