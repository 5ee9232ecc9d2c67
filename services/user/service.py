"""The user service's rules: profiles, the address book and payment methods with their defaults,
preferences and the wishlist, and the checkout details a saga needs. Never commits.

Defaults: each (user, address type) has at most one default address and each user at most one
default payment method (partial unique indexes). Every change touching a default first locks the
user's profile row, so concurrent changes of one user serialize instead of colliding on the index.
The first address of a type and the first payment method become the default; deleting the default
promotes the newest remaining one.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto import TokenCipher
from core.errors import InvalidRequest
from services.user import repository as repo
from services.user.errors import (
    AddressNotFound,
    InvalidCursor,
    PaymentMethodExpired,
    PaymentMethodNotFound,
    ProfileAlreadyExists,
    ProfileNotFound,
)
from services.user.models import (
    Address,
    AddressType,
    PaymentMethod,
    UserPreferences,
    UserProfile,
    WishlistItem,
)
from services.user.schemas import (
    AddressIn,
    AddressSnapshot,
    AddressUpdate,
    AddressView,
    CheckoutDetails,
    CheckoutPaymentMethod,
    PaymentMethodIn,
    PaymentMethodView,
    PreferencesUpdate,
    PreferencesView,
    ProfileUpdate,
    ProfileView,
    WishlistItemView,
    WishlistPage,
)

MAX_PAGE_SIZE = 100


async def _locked_profile(session: AsyncSession, user_id: uuid.UUID) -> UserProfile:
    profile = await repo.get_profile(session, user_id, for_update=True)
    if profile is None:
        raise ProfileNotFound(f"no profile for user {user_id}", user_id=str(user_id))
    return profile


async def _require_profile(session: AsyncSession, user_id: uuid.UUID) -> UserProfile:
    profile = await repo.get_profile(session, user_id)
    if profile is None:
        raise ProfileNotFound(f"no profile for user {user_id}", user_id=str(user_id))
    return profile


# --- profile -----------------------------------------------------------------------------------


def _profile_view(p: UserProfile) -> ProfileView:
    return ProfileView.model_validate(p, from_attributes=True)


async def create_profile(
    session: AsyncSession, *, user_id: uuid.UUID, email: str, first_name: str, last_name: str
) -> ProfileView:
    """The profile of a newly registered user, with default preferences (the seed's ``user.created``).

    A profile that already exists for the same user and email is returned as is (the step ran again
    under another key); one with a different email is refused with ``ProfileAlreadyExists``."""
    address = email.strip().lower()
    created = await repo.insert_profile(
        session, user_id=user_id, email=address, first_name=first_name.strip(), last_name=last_name.strip()
    )
    profile = await _require_profile(session, user_id)
    if not created and profile.email != address:
        raise ProfileAlreadyExists(f"user {user_id} already has a profile", user_id=str(user_id))
    await repo.upsert_preferences(session, user_id, {})
    return _profile_view(profile)


async def delete_profile(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Remove a profile and everything of that user here (the registration saga's compensation)."""
    return await repo.delete_profile(session, user_id)


async def get_profile(session: AsyncSession, user_id: uuid.UUID) -> ProfileView:
    return _profile_view(await _require_profile(session, user_id))


async def update_profile(session: AsyncSession, user_id: uuid.UUID, changes: ProfileUpdate) -> ProfileView:
    """Apply the fields present in ``changes`` (and only those)."""
    await _locked_profile(session, user_id)
    values = changes.model_dump(include=changes.model_fields_set)
    if values:
        await repo.update_profile(session, user_id, values)
    return await get_profile(session, user_id)


# --- addresses ---------------------------------------------------------------------------------


def _address_view(a: Address) -> AddressView:
    return AddressView.model_validate(a, from_attributes=True)


async def list_addresses(
    session: AsyncSession, user_id: uuid.UUID, type_: AddressType | None = None
) -> list[AddressView]:
    rows = await repo.list_addresses(session, user_id, type_.value if type_ else None)
    return [_address_view(a) for a in rows]


async def get_address(session: AsyncSession, user_id: uuid.UUID, address_id: uuid.UUID) -> AddressView:
    return _address_view(await _owned_address(session, user_id, address_id))


async def _owned_address(session: AsyncSession, user_id: uuid.UUID, address_id: uuid.UUID) -> Address:
    address = await repo.get_address(session, user_id, address_id)
    if address is None:
        raise AddressNotFound(f"address {address_id} not found", address_id=str(address_id))
    return address


async def add_address(session: AsyncSession, user_id: uuid.UUID, data: AddressIn) -> AddressView:
    await _locked_profile(session, user_id)
    make_default = data.is_default or not await repo.has_address_of_type(session, user_id, data.type.value)
    if make_default:
        await repo.clear_default_address(session, user_id, data.type.value)
    address_id = uuid.uuid4()
    values = data.model_dump(mode="json")
    await repo.insert_address(
        session, {**values, "id": address_id, "user_id": user_id, "is_default": make_default}
    )
    return await get_address(session, user_id, address_id)


async def update_address(
    session: AsyncSession, user_id: uuid.UUID, address_id: uuid.UUID, changes: AddressUpdate
) -> AddressView:
    """Apply the fields present in ``changes``. ``is_default: true`` moves the default here; ``false``
    on the default leaves the type without a default."""
    await _locked_profile(session, user_id)
    address = await _owned_address(session, user_id, address_id)
    values = changes.model_dump(include=changes.model_fields_set)
    if values.get("is_default"):
        await repo.clear_default_address(session, user_id, address.type)
    if values:
        await repo.update_address(session, address_id, values)
    return await get_address(session, user_id, address_id)


async def set_default_address(
    session: AsyncSession, user_id: uuid.UUID, address_id: uuid.UUID
) -> AddressView:
    return await update_address(session, user_id, address_id, AddressUpdate(is_default=True))


async def delete_address(session: AsyncSession, user_id: uuid.UUID, address_id: uuid.UUID) -> None:
    await _locked_profile(session, user_id)
    address = await _owned_address(session, user_id, address_id)
    await repo.delete_address(session, user_id, address_id)
    if address.is_default:
        successor = await repo.newest_address_id(session, user_id, address.type)
        if successor is not None:
            await repo.update_address(session, successor, {"is_default": True})


# --- payment methods ---------------------------------------------------------------------------


def _payment_view(p: PaymentMethod) -> PaymentMethodView:
    return PaymentMethodView.model_validate(p, from_attributes=True)


def _expired(exp_year: int, exp_month: int, today: date) -> bool:
    return (exp_year, exp_month) < (today.year, today.month)  # valid through the end of its month


async def add_payment_method(
    session: AsyncSession,
    cipher: TokenCipher,
    user_id: uuid.UUID,
    data: PaymentMethodIn,
    *,
    today: date | None = None,
) -> PaymentMethodView:
    """Store a PSP-tokenized card: the token encrypted, brand / last4 / expiry in clear."""
    if _expired(data.exp_year, data.exp_month, today or datetime.now(UTC).date()):
        raise PaymentMethodExpired(f"card expired {data.exp_month:02d}/{data.exp_year}")
    await _locked_profile(session, user_id)
    make_default = data.is_default or not await repo.has_payment_method(session, user_id)
    if make_default:
        await repo.clear_default_payment_method(session, user_id)
    method_id = uuid.uuid4()
    await repo.insert_payment_method(
        session,
        {
            "id": method_id,
            "user_id": user_id,
            "psp_token_encrypted": cipher.encrypt(data.psp_token),
            "brand": data.brand,
            "last4": data.last4,
            "exp_month": data.exp_month,
            "exp_year": data.exp_year,
            "is_default": make_default,
        },
    )
    method = await repo.get_payment_method(session, user_id, method_id)
    assert method is not None
    return _payment_view(method)


async def list_payment_methods(session: AsyncSession, user_id: uuid.UUID) -> list[PaymentMethodView]:
    return [_payment_view(p) for p in await repo.list_payment_methods(session, user_id)]


async def _owned_payment_method(
    session: AsyncSession, user_id: uuid.UUID, payment_method_id: uuid.UUID
) -> PaymentMethod:
    method = await repo.get_payment_method(session, user_id, payment_method_id)
    if method is None:
        raise PaymentMethodNotFound(
            f"payment method {payment_method_id} not found", payment_method_id=str(payment_method_id)
        )
    return method


async def set_default_payment_method(
    session: AsyncSession, user_id: uuid.UUID, payment_method_id: uuid.UUID
) -> PaymentMethodView:
    await _locked_profile(session, user_id)
    await _owned_payment_method(session, user_id, payment_method_id)
    await repo.clear_default_payment_method(session, user_id)
    await repo.set_payment_method_default(session, payment_method_id)
    return _payment_view(await _owned_payment_method(session, user_id, payment_method_id))


async def delete_payment_method(
    session: AsyncSession, user_id: uuid.UUID, payment_method_id: uuid.UUID
) -> None:
    """Forget a payment method (the PSP token is deleted with the row)."""
    await _locked_profile(session, user_id)
    method = await _owned_payment_method(session, user_id, payment_method_id)
    await repo.delete_payment_method(session, user_id, payment_method_id)
    if method.is_default:
        successor = await repo.newest_payment_method_id(session, user_id)
        if successor is not None:
            await repo.set_payment_method_default(session, successor)


# --- checkout ----------------------------------------------------------------------------------


async def get_checkout_details(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    address_id: uuid.UUID,
    payment_method_id: uuid.UUID,
    today: date | None = None,
) -> CheckoutDetails:
    """The address snapshot and the usable payment method (its PSP token still encrypted: only the
    payment service decrypts it) of a checkout.
    Ids of another user are refused exactly like unknown ids (``AddressNotFound``,
    ``PaymentMethodNotFound``); an expired card with ``PaymentMethodExpired``."""
    address = await _owned_address(session, user_id, address_id)
    method = await _owned_payment_method(session, user_id, payment_method_id)
    if _expired(method.exp_year, method.exp_month, today or datetime.now(UTC).date()):
        raise PaymentMethodExpired(
            f"payment method {payment_method_id} expired {method.exp_month:02d}/{method.exp_year}",
            payment_method_id=str(payment_method_id),
        )
    return CheckoutDetails(
        address=AddressSnapshot.model_validate(address, from_attributes=True),
        payment_method=CheckoutPaymentMethod(
            id=method.id,
            psp_token_encrypted=method.psp_token_encrypted,
            brand=method.brand,
            last4=method.last4,
        ),
    )


# --- preferences -------------------------------------------------------------------------------


def _preferences_view(p: UserPreferences) -> PreferencesView:
    return PreferencesView.model_validate(p, from_attributes=True)


async def get_preferences(session: AsyncSession, user_id: uuid.UUID) -> PreferencesView:
    prefs = await repo.get_preferences(session, user_id)
    if prefs is not None:
        return _preferences_view(prefs)
    await _require_profile(session, user_id)
    return PreferencesView(language="en", currency="USD", marketing_opt_in=False, extras={}, updated_at=None)


async def update_preferences(
    session: AsyncSession, user_id: uuid.UUID, changes: PreferencesUpdate
) -> PreferencesView:
    await _locked_profile(session, user_id)
    await repo.upsert_preferences(session, user_id, changes.model_dump(include=changes.model_fields_set))
    return await get_preferences(session, user_id)


# --- wishlist ----------------------------------------------------------------------------------


def _wishlist_view(w: WishlistItem) -> WishlistItemView:
    return WishlistItemView.model_validate(w, from_attributes=True)


async def add_to_wishlist(
    session: AsyncSession, user_id: uuid.UUID, product_id: uuid.UUID
) -> WishlistItemView:
    """Idempotent: adding a product already there returns the existing item."""
    await _require_profile(session, user_id)
    await repo.add_wishlist_item(session, user_id, product_id)
    item = await repo.get_wishlist_item(session, user_id, product_id)
    assert item is not None
    return _wishlist_view(item)


async def remove_from_wishlist(session: AsyncSession, user_id: uuid.UUID, product_id: uuid.UUID) -> bool:
    return await repo.remove_wishlist_item(session, user_id, product_id)


def _encode_cursor(item: WishlistItem) -> str:
    assert item.created_at is not None
    raw = json.dumps({"t": item.created_at.isoformat(), "i": str(item.id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        data: Any = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at = datetime.fromisoformat(data["t"])
        if at.tzinfo is None:
            raise ValueError("naive timestamp")
        return at, uuid.UUID(data["i"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidCursor("invalid pagination cursor") from None


async def list_wishlist(
    session: AsyncSession, user_id: uuid.UUID, *, limit: int = 20, cursor: str | None = None
) -> WishlistPage:
    """Newest first. ``next_cursor`` fetches the following page; None when there is none."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE_SIZE}", limit=limit)
    before = _decode_cursor(cursor) if cursor else None
    rows = await repo.wishlist_page(session, user_id, limit=limit + 1, before=before)
    page = rows[:limit]
    return WishlistPage(
        items=[_wishlist_view(w) for w in page],
        next_cursor=_encode_cursor(page[-1]) if len(rows) > limit else None,
    )
