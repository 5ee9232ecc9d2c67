"""Inputs and views of the user service's operations (pydantic, no tables).

Update models list exactly the fields a user may change (``extra="forbid"``: no mass assignment of
ids, timestamps or defaults), and only the fields present in the request are applied.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from services.user.models import AddressType

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()\-.]{4,31}$")]
Locale = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
]
Country = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$")]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
OptLine = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
City = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
PostalCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)]
Currency = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{3}$")]

MAX_EXTRAS_BYTES = 8192


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _reject_nulls(model: BaseModel, fields: tuple[str, ...]) -> None:
    for name in fields:
        if name in model.model_fields_set and getattr(model, name) is None:
            raise ValueError(f"{name} cannot be null")


def _dob_in_range(value: date | None) -> date | None:
    if value is not None and not (date(1900, 1, 1) <= value <= date.today()):
        raise ValueError("date_of_birth must be between 1900-01-01 and today")
    return value


# --- profile -----------------------------------------------------------------------------------


class ProfileView(BaseModel):
    user_id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    phone: str | None
    date_of_birth: date | None
    locale: str | None
    created_at: datetime
    updated_at: datetime


class ProfileUpdate(_Input):
    """Fields a user may change on their profile; absent fields stay, null clears an optional one."""

    first_name: Name | None = None
    last_name: Name | None = None
    phone: Phone | None = None
    date_of_birth: date | None = None
    locale: Locale | None = None

    check_date_of_birth = field_validator("date_of_birth")(_dob_in_range)

    @model_validator(mode="after")
    def _names_not_null(self) -> ProfileUpdate:
        _reject_nulls(self, ("first_name", "last_name"))
        return self


# --- addresses ---------------------------------------------------------------------------------


class AddressIn(_Input):
    type: AddressType
    name: Line  # recipient
    line1: Line
    line2: OptLine | None = None
    city: City
    region: OptLine | None = None
    postal_code: PostalCode
    country: Country  # ISO 3166-1 alpha-2
    phone: Phone | None = None
    is_default: bool = False  # the first address of a type becomes its default anyway


class AddressUpdate(_Input):
    """Fields of an address a user may change (the type is fixed: add a new address instead)."""

    name: Line | None = None
    line1: Line | None = None
    line2: OptLine | None = None
    city: City | None = None
    region: OptLine | None = None
    postal_code: PostalCode | None = None
    country: Country | None = None
    phone: Phone | None = None
    is_default: bool | None = None

    @model_validator(mode="after")
    def _required_not_null(self) -> AddressUpdate:
        _reject_nulls(self, ("name", "line1", "city", "postal_code", "country", "is_default"))
        return self


class AddressSnapshot(BaseModel):
    """Every field of an address, as the checkout copies it into the order."""

    id: uuid.UUID
    user_id: uuid.UUID
    type: AddressType
    name: str
    line1: str
    line2: str | None
    city: str
    region: str | None
    postal_code: str
    country: str
    phone: str | None


class AddressView(AddressSnapshot):
    is_default: bool
    created_at: datetime
    updated_at: datetime


# --- payment methods ---------------------------------------------------------------------------


class PaymentMethodIn(_Input):
    """What the PSP's tokenization returned for a card; never the card number itself."""

    psp_token: str = Field(min_length=1, max_length=255, repr=False)
    brand: Annotated[
        str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=30)
    ]
    last4: str = Field(pattern=r"^[0-9]{4}$")
    exp_month: int = Field(ge=1, le=12)
    exp_year: int = Field(ge=2000, le=2199)
    is_default: bool = False  # the first payment method becomes the default anyway


class PaymentMethodView(BaseModel):
    """A stored payment method as the user sees it (no token)."""

    id: uuid.UUID
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    is_default: bool
    created_at: datetime


class CheckoutPaymentMethod(BaseModel):
    id: uuid.UUID
    # The provider token as stored (ENCRYPTION_KEY, core/crypto.py): it travels through the saga's
    # history encrypted and only the payment service decrypts it, for the authorization.
    psp_token_encrypted: str | None = Field(default=None, repr=False)
    # Plaintext, as checkouts recorded before the encrypted token carried it (histories replay).
    psp_token: str | None = Field(default=None, repr=False)
    brand: str
    last4: str


class CheckoutDetails(BaseModel):
    address: AddressSnapshot
    payment_method: CheckoutPaymentMethod


# --- preferences -------------------------------------------------------------------------------


class PreferencesView(BaseModel):
    language: str
    currency: str
    marketing_opt_in: bool
    extras: dict[str, Any]
    updated_at: datetime | None


class PreferencesUpdate(_Input):
    language: Locale | None = None
    currency: Currency | None = None
    marketing_opt_in: bool | None = None
    extras: dict[str, Any] | None = None  # replaces the stored extras as a whole

    @field_validator("extras")
    @classmethod
    def _extras_small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value)) > MAX_EXTRAS_BYTES:
            raise ValueError(f"extras must serialize to at most {MAX_EXTRAS_BYTES} bytes of JSON")
        return value

    @model_validator(mode="after")
    def _not_null(self) -> PreferencesUpdate:
        _reject_nulls(self, ("language", "currency", "marketing_opt_in", "extras"))
        return self


# --- wishlist ----------------------------------------------------------------------------------


class WishlistItemView(BaseModel):
    id: uuid.UUID
    product_id: uuid.UUID
    created_at: datetime


class WishlistPage(BaseModel):
    items: list[WishlistItemView]
    next_cursor: str | None  # pass back as ``cursor`` for the next (older) page; None at the end
