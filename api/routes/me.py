"""The signed-in shopper's own data: profile, address book, payment methods, preferences, notification
preferences and wishlist. Each route reads or writes one service's database through that service's
functions, scoped to the caller: another user's address or payment method is 404, like an unknown id.

Request models forbid unknown fields (nobody sets their own id, role, PSP token or default flags by
smuggling fields). Payment methods: the card goes to the PSP sandbox for tokenization right here; only
the PSP token (encrypted by the user service), brand, last4 and expiry are stored - never the number or
the security code, which are ``SecretStr`` and never logged.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

from api.auth import Caller, CurrentUser
from api.deps import SessionsDep, SettingsDep
from api.middleware import strict_json_body
from api.problems import problem_responses
from core.crypto import TokenCipher
from core.errors import BusinessError, NotFound
from services.auth import service as auth_service
from services.notification import service as notification_service
from services.notification.schemas import PreferenceUpdate, PreferenceView
from services.payment.provider import CardDetails, PaymentProviderError, PspSandboxProvider
from services.product import service as product_service
from services.user import service as user_service
from services.user.models import AddressType
from services.user.schemas import (
    AddressIn,
    AddressUpdate,
    AddressView,
    City,
    Country,
    Currency,
    Line,
    Locale,
    Name,
    PaymentMethodIn,
    PaymentMethodView,
    PostalCode,
    PreferencesUpdate,
    PreferencesView,
    ProfileUpdate,
    ProfileView,
    WishlistItemView,
    WishlistPage,
)

router = APIRouter(prefix="/v1/me", tags=["me"])

# The lengths of the user service's columns (a longer value would fail in the database).
Region = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
ShortLocale = Annotated[Locale, StringConstraints(max_length=35)]


async def _strict_caller(caller: CurrentUser, _: Annotated[None, Depends(strict_json_body)]) -> Caller:
    """The caller first (401), then the body's JSON types (422: no 0 taken for false or a date) and no
    NUL or lone surrogate in any text (PostgreSQL cannot store them)."""
    return caller


StrictUser = Annotated[Caller, Depends(_strict_caller)]


class PaymentProviderUnavailable(BusinessError):
    status = 503
    title = "The payment provider is not reachable right now"


class WishlistItemNotFound(NotFound):
    title = "Not on the wishlist"


# --- models ------------------------------------------------------------------------------------


class Me(ProfileView):
    email_verified: bool
    roles: list[str]


class ProfilePatch(ProfileUpdate):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"first_name": "Ada", "phone": "+44 20 7946 0000", "locale": "en-GB"}]
        },
    )

    # Leave a field out to keep it; these cannot be cleared, so the schema does not allow null.
    first_name: Name = None  # type: ignore[assignment]
    last_name: Name = None  # type: ignore[assignment]
    locale: ShortLocale | None = None


class AddressCreate(AddressIn):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "shipping",
                    "name": "Ada Lovelace",
                    "line1": "12 St James's Square",
                    "city": "London",
                    "postal_code": "SW1Y 4JH",
                    "country": "GB",
                    "is_default": True,
                }
            ]
        },
    )

    region: Region | None = None


class AddressPatch(AddressUpdate):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"line2": "Flat 3", "is_default": True}]}
    )

    # Leave a field out to keep it; only line2, region and phone can be cleared with null.
    name: Line = None  # type: ignore[assignment]
    line1: Line = None  # type: ignore[assignment]
    city: City = None  # type: ignore[assignment]
    postal_code: PostalCode = None  # type: ignore[assignment]
    country: Country = None  # type: ignore[assignment]
    is_default: bool = None  # type: ignore[assignment]
    region: Region | None = None


class CardIn(BaseModel):
    """A card as the shopper typed it. Sent to the PSP for tokenization, never stored or logged."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}]
        },
    )

    number: SecretStr = Field(
        min_length=12, max_length=23, description="12 to 19 digits; spaces or dashes allowed"
    )
    exp_month: int = Field(ge=1, le=12)
    exp_year: int = Field(ge=2000, le=2199)
    cvc: SecretStr = Field(min_length=3, max_length=4)
    is_default: bool = False

    @field_validator("number")
    @classmethod
    def _digits(cls, value: SecretStr) -> SecretStr:
        digits = value.get_secret_value().replace(" ", "").replace("-", "")
        if not re.fullmatch(r"[0-9]{12,19}", digits):
            raise ValueError("the card number must be 12 to 19 digits")
        return SecretStr(digits)

    @field_validator("cvc")
    @classmethod
    def _cvc_digits(cls, value: SecretStr) -> SecretStr:
        if not re.fullmatch(r"[0-9]{3,4}", value.get_secret_value()):
            raise ValueError("the security code must be digits")
        return value


class PreferencesPatch(PreferencesUpdate):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"language": "fr", "currency": "EUR", "marketing_opt_in": False}]},
    )

    # Leave a field out to keep it; none of them can be cleared, so the schema does not allow null.
    language: ShortLocale = None  # type: ignore[assignment]
    currency: Currency = None  # type: ignore[assignment]
    marketing_opt_in: bool = None  # type: ignore[assignment]
    extras: dict[str, Any] = None  # type: ignore[assignment]


class NotificationPreferenceChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: Literal["transactional", "order_updates", "marketing"] = Field(
        description="security mails (verification, password reset) are always sent"
    )
    channel: Literal["email"] = "email"
    enabled: bool


class NotificationPreferencesPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"preferences": [{"category": "marketing", "enabled": True}]}]},
    )
    preferences: list[NotificationPreferenceChange] = Field(min_length=1, max_length=8)


class WishlistAdd(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"product_id": "3f2b1c0d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"}]},
    )
    product_id: uuid.UUID


# --- profile -----------------------------------------------------------------------------------


async def _me(sessions: SessionsDep, user_id: uuid.UUID, profile: ProfileView | None = None) -> Me:
    if profile is None:
        async with sessions["user"]() as s:
            profile = await user_service.get_profile(s, user_id)
    async with sessions["auth"]() as s:
        account = await auth_service.get_user(s, user_id)
    return Me(
        **profile.model_dump(), email_verified=account.email_verified_at is not None, roles=account.roles
    )


@router.get("", response_model=Me, summary="My profile", responses=problem_responses(401, 404))
async def get_me(caller: CurrentUser, sessions: SessionsDep) -> Me:
    return await _me(sessions, caller.user_id)


@router.patch(
    "",
    response_model=Me,
    summary="Change my profile",
    description="Only the fields present change; null clears an optional field. Email, id and roles "
    "cannot be changed here (unknown fields are refused).",
    responses=problem_responses(401, 404, 422),
)
async def patch_me(body: ProfilePatch, caller: StrictUser, sessions: SessionsDep) -> Me:
    async with sessions["user"]() as s, s.begin():
        profile = await user_service.update_profile(s, caller.user_id, body)
    return await _me(sessions, caller.user_id, profile)


# --- addresses ---------------------------------------------------------------------------------


@router.get(
    "/addresses",
    response_model=list[AddressView],
    summary="My addresses",
    responses=problem_responses(401, 422),
)
async def list_addresses(
    caller: CurrentUser,
    sessions: SessionsDep,
    address_type: Annotated[
        AddressType | None, Query(alias="type", description="only shipping or billing addresses")
    ] = None,
) -> list[AddressView]:
    async with sessions["user"]() as s:
        return await user_service.list_addresses(s, caller.user_id, address_type)


@router.post(
    "/addresses",
    status_code=201,
    response_model=AddressView,
    summary="Add an address",
    description="The first address of a type becomes its default.",
    responses=problem_responses(401, 404, 422),
)
async def add_address(
    body: AddressCreate, caller: StrictUser, sessions: SessionsDep, response: Response
) -> AddressView:
    async with sessions["user"]() as s, s.begin():
        address = await user_service.add_address(s, caller.user_id, body)
    response.headers["Location"] = f"/v1/me/addresses/{address.id}"
    return address


@router.get(
    "/addresses/{address_id}",
    response_model=AddressView,
    summary="One of my addresses",
    responses=problem_responses(401, 404),
)
async def get_address(address_id: uuid.UUID, caller: CurrentUser, sessions: SessionsDep) -> AddressView:
    async with sessions["user"]() as s:
        return await user_service.get_address(s, caller.user_id, address_id)


@router.patch(
    "/addresses/{address_id}",
    response_model=AddressView,
    summary="Change one of my addresses",
    description="`is_default: true` makes it the default of its type.",
    responses=problem_responses(401, 404, 422),
)
async def patch_address(
    address_id: uuid.UUID, body: AddressPatch, caller: StrictUser, sessions: SessionsDep
) -> AddressView:
    async with sessions["user"]() as s, s.begin():
        return await user_service.update_address(s, caller.user_id, address_id, body)


@router.delete(
    "/addresses/{address_id}",
    status_code=204,
    summary="Delete one of my addresses",
    description="Deleting the default makes the newest remaining address of its type the default.",
    responses=problem_responses(401, 404),
)
async def delete_address(address_id: uuid.UUID, caller: CurrentUser, sessions: SessionsDep) -> Response:
    async with sessions["user"]() as s, s.begin():
        await user_service.delete_address(s, caller.user_id, address_id)
    return Response(status_code=204)


# --- payment methods ---------------------------------------------------------------------------


@router.get(
    "/payment-methods",
    response_model=list[PaymentMethodView],
    summary="My payment methods (brand, last4, expiry)",
    responses=problem_responses(401),
)
async def list_payment_methods(caller: CurrentUser, sessions: SessionsDep) -> list[PaymentMethodView]:
    async with sessions["user"]() as s:
        return await user_service.list_payment_methods(s, caller.user_id)


@router.post(
    "/payment-methods",
    status_code=201,
    response_model=PaymentMethodView,
    summary="Add a card",
    description="The card is tokenized at the payment provider; only its token (encrypted), brand, last4 "
    "and expiry are stored. The first card becomes the default. A card the provider refuses is 422 "
    "`InvalidCard`.",
    responses=problem_responses(401, 404, 422, 503),
)
async def add_payment_method(
    body: CardIn, caller: StrictUser, sessions: SessionsDep, settings: SettingsDep, response: Response
) -> PaymentMethodView:
    async with sessions["user"]() as s:
        await user_service.get_profile(s, caller.user_id)  # ProfileNotFound before calling the provider
    card = CardDetails(number=body.number, exp_month=body.exp_month, exp_year=body.exp_year, cvc=body.cvc)
    try:
        async with PspSandboxProvider(settings.psp_url) as psp:
            token = await psp.tokenize(card)  # InvalidCard (422) passes through
    except PaymentProviderError as exc:
        raise PaymentProviderUnavailable("the card could not be tokenized right now; try again") from exc
    async with sessions["user"]() as s, s.begin():
        method = await user_service.add_payment_method(
            s,
            TokenCipher.from_settings(settings),
            caller.user_id,
            PaymentMethodIn(
                psp_token=token.token,
                brand=token.brand,
                last4=token.last4,
                exp_month=token.exp_month,
                exp_year=token.exp_year,
                is_default=body.is_default,
            ),
        )
    response.headers["Location"] = "/v1/me/payment-methods"
    return method


@router.post(
    "/payment-methods/{payment_method_id}/default",
    response_model=PaymentMethodView,
    summary="Make one of my payment methods the default",
    responses=problem_responses(401, 404),
)
async def set_default_payment_method(
    payment_method_id: uuid.UUID, caller: CurrentUser, sessions: SessionsDep
) -> PaymentMethodView:
    async with sessions["user"]() as s, s.begin():
        return await user_service.set_default_payment_method(s, caller.user_id, payment_method_id)


@router.delete(
    "/payment-methods/{payment_method_id}",
    status_code=204,
    summary="Delete one of my payment methods",
    description="Deleting the default makes the newest remaining one the default.",
    responses=problem_responses(401, 404),
)
async def delete_payment_method(
    payment_method_id: uuid.UUID, caller: CurrentUser, sessions: SessionsDep
) -> Response:
    async with sessions["user"]() as s, s.begin():
        await user_service.delete_payment_method(s, caller.user_id, payment_method_id)
    return Response(status_code=204)


# --- preferences -------------------------------------------------------------------------------


@router.get(
    "/preferences",
    response_model=PreferencesView,
    summary="My shop preferences (language, currency, marketing opt-in)",
    responses=problem_responses(401, 404),
)
async def get_preferences(caller: CurrentUser, sessions: SessionsDep) -> PreferencesView:
    async with sessions["user"]() as s:
        return await user_service.get_preferences(s, caller.user_id)


@router.patch(
    "/preferences",
    response_model=PreferencesView,
    summary="Change my shop preferences",
    responses=problem_responses(401, 404, 422),
)
async def patch_preferences(
    body: PreferencesPatch, caller: StrictUser, sessions: SessionsDep
) -> PreferencesView:
    async with sessions["user"]() as s, s.begin():
        return await user_service.update_preferences(s, caller.user_id, body)


@router.get(
    "/notification-preferences",
    response_model=list[PreferenceView],
    summary="Which emails I receive",
    responses=problem_responses(401),
)
async def get_notification_preferences(caller: CurrentUser, sessions: SessionsDep) -> list[PreferenceView]:
    async with sessions["notification"]() as s:
        return await notification_service.get_preferences(s, caller.user_id)


@router.patch(
    "/notification-preferences",
    response_model=list[PreferenceView],
    summary="Switch email categories on or off",
    description="Security mails (verification, password reset) are always sent.",
    responses=problem_responses(401, 422),
)
async def patch_notification_preferences(
    body: NotificationPreferencesPatch, caller: StrictUser, sessions: SessionsDep
) -> list[PreferenceView]:
    changes = [
        PreferenceUpdate(category=c.category, channel=c.channel, enabled=c.enabled) for c in body.preferences
    ]
    async with sessions["notification"]() as s, s.begin():
        return await notification_service.update_preferences(s, caller.user_id, changes)


# --- wishlist ----------------------------------------------------------------------------------


@router.get(
    "/wishlist",
    response_model=WishlistPage,
    summary="My wishlist, newest first",
    responses=problem_responses(401, 422),
)
async def list_wishlist(
    caller: CurrentUser,
    sessions: SessionsDep,
    cursor: Annotated[
        str | None, Query(max_length=500, description="`next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> WishlistPage:
    async with sessions["user"]() as s:
        return await user_service.list_wishlist(s, caller.user_id, limit=limit, cursor=cursor)


@router.post(
    "/wishlist",
    status_code=201,
    response_model=WishlistItemView,
    summary="Add a product to my wishlist",
    description="Adding a product that is already there returns the existing item.",
    responses=problem_responses(401, 404, 422),
)
async def add_to_wishlist(body: WishlistAdd, caller: StrictUser, sessions: SessionsDep) -> WishlistItemView:
    async with sessions["product"]() as s:
        await product_service.get_product(s, product_id=body.product_id)  # ProductNotFound (404)
    async with sessions["user"]() as s, s.begin():
        return await user_service.add_to_wishlist(s, caller.user_id, body.product_id)


@router.delete(
    "/wishlist/{product_id}",
    status_code=204,
    summary="Remove a product from my wishlist",
    responses=problem_responses(401, 404),
)
async def remove_from_wishlist(product_id: uuid.UUID, caller: CurrentUser, sessions: SessionsDep) -> Response:
    async with sessions["user"]() as s, s.begin():
        removed = await user_service.remove_from_wishlist(s, caller.user_id, product_id)
    if not removed:
        raise WishlistItemNotFound(f"product {product_id} is not on the wishlist")
    return Response(status_code=204)
