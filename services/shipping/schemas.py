"""Pydantic models of the shipping service's operations (inputs validated before anything is written)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Country = str  # ISO 3166-1 alpha-2, upper case
COUNTRY_PATTERN = r"^[A-Z]{2}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
MAX_WEIGHT_GRAMS = 1_000_000

ServiceLevelName = Literal["standard", "express", "overnight"]
DirectionName = Literal["outbound", "return"]
CarrierEventStatus = Literal[
    "label_created",
    "picked_up",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "exception",
    "returned_to_sender",
]


class QuoteAddress(BaseModel):
    """What a quote needs of an address (other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    country: str = Field(pattern=COUNTRY_PATTERN, description="ISO 3166-1 alpha-2")
    postal_code: str = Field(min_length=1, max_length=20)


class ShippingAddress(QuoteAddress):
    """The address snapshot stored with a shipment."""

    name: str | None = Field(default=None, max_length=200)
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=40)


class QuoteRequest(BaseModel):
    address: QuoteAddress
    shipping_method_id: uuid.UUID
    weight_grams: int = Field(gt=0, le=MAX_WEIGHT_GRAMS)
    subtotal_amount: int = Field(ge=0, description="order subtotal in minor units (after discounts)")
    currency: str = Field(pattern=CURRENCY_PATTERN)


class Quote(BaseModel):
    amount: int
    currency: str
    method_id: uuid.UUID
    method_code: str
    method_name: str
    carrier_code: str
    service_level: ServiceLevelName
    estimated_days: int = Field(description="the method's max_delivery_days")
    min_delivery_days: int
    max_delivery_days: int
    free_shipping: bool = Field(description="the subtotal reached the rate's free_over_amount")


class ShipmentItem(BaseModel):
    variant_id: uuid.UUID
    quantity: int = Field(gt=0, le=100_000)
    order_item_id: uuid.UUID | None = None
    name: str | None = Field(default=None, max_length=300)


class TrackingOutcome(BaseModel):
    shipment_id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID
    direction: DirectionName
    duplicate: bool = Field(description="the carrier event id was already recorded")
    first_scan: bool = Field(description="this event took the parcel out of the pre-pickup states")
    delivered: bool = Field(description="this event marked the shipment delivered")
    status: str = Field(description="the shipment's status after the event")


class ShipmentView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID
    direction: DirectionName
    method_id: uuid.UUID
    carrier_id: uuid.UUID
    status: str
    tracking_number: str | None
    label_id: str | None
    label_url: str | None
    cost_amount: int | None
    currency: str | None
    address: dict[str, Any]
    items: list[dict[str, Any]]
    weight_grams: int
    shipped_at: datetime | None
    delivered_at: datetime | None
    cancelled_at: datetime | None
    version: int
    created_at: datetime | None
    updated_at: datetime | None


# --------------------------------------------------------------------------------------------
# Admin configuration


class CarrierIn(BaseModel):
    code: str = Field(min_length=1, max_length=50, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = Field(min_length=1, max_length=200)
    tracking_url_template: str | None = Field(default=None, max_length=500)
    is_active: bool = True
    settings: dict[str, Any] = Field(default_factory=dict)


class CarrierUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    tracking_url_template: str | None = Field(default=None, max_length=500)
    is_active: bool | None = None
    settings: dict[str, Any] | None = None


class CarrierView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    code: str
    name: str
    tracking_url_template: str | None
    is_active: bool
    settings: dict[str, Any]


def _check_patterns(patterns: list[str] | None) -> list[str] | None:
    if patterns is None:
        return None
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"postal code pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from exc
    return patterns


class ZoneIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    countries: list[str] = Field(
        default_factory=list, max_length=300, description="empty: catch-all zone (rest of world)"
    )
    postal_code_patterns: list[str] | None = Field(default=None, max_length=100)
    is_active: bool = True

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        for country in value:
            if not re.fullmatch(COUNTRY_PATTERN, country):
                raise ValueError(f"{country!r} is not an ISO 3166-1 alpha-2 code (upper case)")
        if len(set(value)) != len(value):
            raise ValueError("countries must not repeat")
        return value

    @field_validator("postal_code_patterns")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        return _check_patterns(value)


class ZoneUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    countries: list[str] | None = Field(default=None, max_length=300)
    postal_code_patterns: list[str] | None = Field(default=None, max_length=100)
    is_active: bool | None = None

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else ZoneIn._countries(value)

    @field_validator("postal_code_patterns")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        return _check_patterns(value)


class ZoneView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    countries: list[str]
    postal_code_patterns: list[str] | None
    is_active: bool


class MethodIn(BaseModel):
    carrier_id: uuid.UUID
    zone_id: uuid.UUID
    code: str = Field(min_length=1, max_length=50, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = Field(min_length=1, max_length=200)
    service_level: ServiceLevelName
    min_delivery_days: int = Field(ge=0, le=365)
    max_delivery_days: int = Field(ge=0, le=365)
    is_active: bool = True

    @model_validator(mode="after")
    def _days(self) -> MethodIn:
        if self.max_delivery_days < self.min_delivery_days:
            raise ValueError("max_delivery_days must be >= min_delivery_days")
        return self


class MethodUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    min_delivery_days: int | None = Field(default=None, ge=0, le=365)
    max_delivery_days: int | None = Field(default=None, ge=0, le=365)
    is_active: bool | None = None


class MethodView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    carrier_id: uuid.UUID
    zone_id: uuid.UUID
    code: str
    name: str
    service_level: ServiceLevelName
    min_delivery_days: int
    max_delivery_days: int
    is_active: bool


class RateIn(BaseModel):
    method_id: uuid.UUID
    min_weight_grams: int = Field(ge=0, le=MAX_WEIGHT_GRAMS)
    max_weight_grams: int = Field(gt=0, le=MAX_WEIGHT_GRAMS, description="exclusive upper bound")
    min_subtotal_amount: int = Field(default=0, ge=0)
    amount: int = Field(ge=0)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    free_over_amount: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _range(self) -> RateIn:
        if self.max_weight_grams <= self.min_weight_grams:
            raise ValueError("max_weight_grams must be greater than min_weight_grams")
        return self


class RateUpdate(BaseModel):
    amount: int | None = Field(default=None, ge=0)
    free_over_amount: int | None = Field(default=None, ge=0)
    clear_free_over: bool = Field(default=False, description="set free_over_amount to NULL")


class RateView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    method_id: uuid.UUID
    min_weight_grams: int
    max_weight_grams: int
    min_subtotal_amount: int
    amount: int
    currency: str
    free_over_amount: int | None
