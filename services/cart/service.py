"""Rules of the cart service: one open cart per user (or per guest token), item edits with optimistic
concurrency, guest-cart merge at login, and the semantic lock a checkout workflow holds.

Every function runs in the caller's transaction and never commits; a refusal raises a
``services.cart.errors`` error and leaves nothing written (edits run in a savepoint).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.cart import repository as repo
from services.cart.errors import (
    CartEmpty,
    CartItemNotFound,
    CartLocked,
    CartNotActive,
    CartNotFound,
    CartNotLocked,
    ConcurrentUpdate,
    CurrencyMismatch,
    QuantityLimitExceeded,
)
from services.cart.models import MAX_ITEM_QUANTITY, CartStatus
from services.cart.schemas import (
    AddItem,
    CartItemView,
    CartView,
    ConvertResult,
    GuestCart,
    LockedCart,
    LockedItem,
    MergeResult,
    UnlockResult,
    UpdateItem,
)

DEFAULT_CURRENCY = "USD"
USER_CART_TTL = timedelta(days=90)  # sliding: every edit pushes expires_at
GUEST_CART_TTL = timedelta(days=30)
ABANDON_BATCH = 1000


def hash_guest_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _ttl(cart: RowMapping) -> timedelta:
    return USER_CART_TTL if cart["user_id"] is not None else GUEST_CART_TTL


async def _view(session: AsyncSession, cart: RowMapping) -> CartView:
    items = [
        CartItemView(
            id=i["id"],
            variant_id=i["variant_id"],
            product_id=i["product_id"],
            quantity=i["quantity"],
            unit_price_amount=i["unit_price_amount"],
            currency=i["currency"],
            line_amount=i["quantity"] * i["unit_price_amount"],
            added_at=i["added_at"],
        )
        for i in await repo.items_of(session, cart["id"])
    ]
    return CartView(
        id=cart["id"],
        user_id=cart["user_id"],
        status=cart["status"],
        currency=cart["currency"],
        version=cart["version"],
        locked_by=cart["locked_by"],
        expires_at=cart["expires_at"],
        items=items,
        item_count=sum(i.quantity for i in items),
        subtotal_amount=sum(i.line_amount for i in items),
    )


# --- get-or-create -------------------------------------------------------------------------


async def _open_user_cart(session: AsyncSession, user_id: uuid.UUID, currency: str) -> RowMapping:
    cart = await repo.open_cart_of_user(session, user_id)
    if cart is None:
        # Concurrent callers: the partial unique index lets exactly one insert win; the others
        # wait for it, insert nothing, and read the winner's row.
        await repo.insert_user_cart(session, user_id, currency, USER_CART_TTL)
        cart = await repo.open_cart_of_user(session, user_id)
    assert cart is not None
    return cart


async def get_or_create_user_cart(
    session: AsyncSession, user_id: uuid.UUID, *, currency: str = DEFAULT_CURRENCY
) -> CartView:
    """The user's open (active or locked) cart; a fresh empty one after a conversion."""
    return await _view(session, await _open_user_cart(session, user_id, currency))


async def get_or_create_guest_cart(
    session: AsyncSession, guest_token: str | None, *, currency: str = DEFAULT_CURRENCY
) -> GuestCart:
    """The guest's open cart for ``guest_token``; without a (live) token a new cart and a new raw
    token, returned once: only its SHA-256 is stored."""
    if guest_token:
        cart = await repo.cart_by_token_hash(session, hash_guest_token(guest_token))
        if cart is not None and cart["status"] == CartStatus.ACTIVE.value:
            return GuestCart(cart=await _view(session, cart), guest_token=None)
    token = secrets.token_urlsafe(32)
    cart = await repo.insert_guest_cart(session, hash_guest_token(token), currency, GUEST_CART_TTL)
    return GuestCart(cart=await _view(session, cart), guest_token=token)


async def get_cart(session: AsyncSession, cart_id: uuid.UUID) -> CartView:
    cart = await repo.cart_row(session, cart_id)
    if cart is None:
        raise CartNotFound("no such cart", cart_id=str(cart_id))
    return await _view(session, cart)


# --- edits ---------------------------------------------------------------------------------


async def _begin_edit(session: AsyncSession, cart_id: uuid.UUID, expected_version: int | None) -> RowMapping:
    """Lock the cart row and bump its version, or refuse: missing, locked, not active, stale."""
    current = await repo.cart_row(session, cart_id)
    if current is None:
        raise CartNotFound("no such cart", cart_id=str(cart_id))
    cart = await repo.bump_version(session, cart_id, expected_version, _ttl(current))
    if cart is not None:
        return cart
    current = await repo.cart_row(session, cart_id)
    assert current is not None
    if current["status"] == CartStatus.LOCKED.value:
        raise CartLocked("the cart is being checked out", cart_id=str(cart_id))
    if current["status"] != CartStatus.ACTIVE.value:
        raise CartNotActive(
            f"the cart is {current['status']}", cart_id=str(cart_id), status=current["status"]
        )
    raise ConcurrentUpdate(
        "the cart changed since it was read",
        cart_id=str(cart_id),
        expected_version=expected_version,
        version=current["version"],
    )


async def add_item(session: AsyncSession, cart_id: uuid.UUID, inp: AddItem) -> CartView:
    """Add a variant (same variant again: quantities add up, at most 99 per line)."""
    async with session.begin_nested():
        cart = await _begin_edit(session, cart_id, inp.expected_version)
        if inp.currency != cart["currency"]:
            if await repo.items_of(session, cart_id):
                raise CurrencyMismatch(
                    f"the cart is in {cart['currency']}, the item in {inp.currency}",
                    cart_currency=cart["currency"],
                    currency=inp.currency,
                )
            cart = await repo.set_cart(session, cart_id, currency=inp.currency, version=cart["version"])
        values = inp.model_dump(
            include={"variant_id", "product_id", "quantity", "unit_price_amount", "currency"}
        )
        if not await repo.add_or_increment(session, cart_id, values):
            raise QuantityLimitExceeded(
                f"at most {MAX_ITEM_QUANTITY} units of one variant", variant_id=str(inp.variant_id)
            )
    return await _view(session, cart)


async def update_item(
    session: AsyncSession, cart_id: uuid.UUID, item_id: uuid.UUID, inp: UpdateItem
) -> CartView:
    async with session.begin_nested():
        cart = await _begin_edit(session, cart_id, inp.expected_version)
        if not await repo.set_item_quantity(session, cart_id, item_id, inp.quantity):
            raise CartItemNotFound("no such item in this cart", item_id=str(item_id))
    return await _view(session, cart)


async def remove_item(
    session: AsyncSession, cart_id: uuid.UUID, item_id: uuid.UUID, *, expected_version: int | None = None
) -> CartView:
    async with session.begin_nested():
        cart = await _begin_edit(session, cart_id, expected_version)
        if not await repo.delete_item(session, cart_id, item_id):
            raise CartItemNotFound("no such item in this cart", item_id=str(item_id))
    return await _view(session, cart)


async def merge_guest_cart(session: AsyncSession, user_id: uuid.UUID, guest_token: str) -> MergeResult:
    """At login: fold the guest's cart into the user's (quantities summed, capped at 99; lines in
    another currency skipped) and mark the guest cart merged. A dead token merges nothing."""
    async with session.begin_nested():
        guest = await repo.cart_by_token_hash(session, hash_guest_token(guest_token), for_update=True)
        user_cart = await _open_user_cart(session, user_id, guest["currency"] if guest else DEFAULT_CURRENCY)
        if guest is None or guest["status"] != CartStatus.ACTIVE.value or guest["id"] == user_cart["id"]:
            return MergeResult(cart=await _view(session, user_cart), merged_lines=0, skipped_variant_ids=[])
        guest_items = await repo.items_of(session, guest["id"])
        target = await _begin_edit(session, user_cart["id"], None)
        if (
            guest_items
            and not await repo.items_of(session, target["id"])
            and target["currency"] != guest["currency"]
        ):
            target = await repo.set_cart(
                session, target["id"], currency=guest["currency"], version=target["version"]
            )
        merged, skipped = 0, []
        for item in guest_items:
            if item["currency"] != target["currency"]:
                skipped.append(item["variant_id"])
                continue
            await repo.merge_line(
                session,
                target["id"],
                {
                    "variant_id": item["variant_id"],
                    "product_id": item["product_id"],
                    "quantity": item["quantity"],
                    "unit_price_amount": item["unit_price_amount"],
                    "currency": item["currency"],
                },
            )
            merged += 1
        await repo.set_cart(
            session, guest["id"], status=CartStatus.MERGED.value, merged_into_cart_id=target["id"]
        )
    return MergeResult(cart=await _view(session, target), merged_lines=merged, skipped_variant_ids=skipped)


# --- the checkout's semantic lock ----------------------------------------------------------


def _locked(cart: RowMapping, items: Sequence[RowMapping]) -> LockedCart:
    return LockedCart(
        cart_id=cart["id"],
        version=cart["version"],
        currency=cart["currency"],
        items=[
            LockedItem(
                variant_id=i["variant_id"],
                product_id=i["product_id"],
                quantity=i["quantity"],
                unit_price_amount=i["unit_price_amount"],
            )
            for i in items
        ],
    )


async def lock(session: AsyncSession, user_id: uuid.UUID, workflow_id: str) -> LockedCart:
    """Lock the user's cart for checkout ``workflow_id`` and return what it holds. Idempotent for
    the same workflow; refused while another workflow holds it (``CartLocked``) or when empty."""
    cart = await repo.open_cart_of_user(session, user_id, for_update=True)
    if cart is None:
        raise CartEmpty("the cart is empty", user_id=str(user_id))
    items = await repo.items_of(session, cart["id"])
    if cart["status"] == CartStatus.LOCKED.value:
        if cart["locked_by"] == workflow_id:
            return _locked(cart, items)
        raise CartLocked("another checkout holds this cart", cart_id=str(cart["id"]))
    if not items:
        raise CartEmpty("the cart is empty", cart_id=str(cart["id"]))
    cart = await repo.set_cart(
        session,
        cart["id"],
        status=CartStatus.LOCKED.value,
        locked_by=workflow_id,
        locked_at=datetime.now(UTC),
    )
    return _locked(cart, items)


async def unlock(session: AsyncSession, cart_id: uuid.UUID, workflow_id: str) -> UnlockResult:
    """Compensation of ``lock``: the cart is editable again. Not locked by this workflow: a no-op."""
    cart = await repo.cart_row(session, cart_id, for_update=True)
    if cart is None:
        raise CartNotFound("no such cart", cart_id=str(cart_id))
    if cart["status"] != CartStatus.LOCKED.value or cart["locked_by"] != workflow_id:
        return UnlockResult(cart_id=cart_id, status=cart["status"], unlocked=False)
    cart = await repo.set_cart(
        session, cart_id, status=CartStatus.ACTIVE.value, locked_by=None, locked_at=None
    )
    return UnlockResult(cart_id=cart_id, status=cart["status"], unlocked=True)


async def convert(
    session: AsyncSession, cart_id: uuid.UUID, workflow_id: str, order_id: uuid.UUID
) -> ConvertResult:
    """After the order is confirmed: the locked cart becomes ``converted`` (the user's next get
    creates a fresh cart). Idempotent for the same order."""
    cart = await repo.cart_row(session, cart_id, for_update=True)
    if cart is None:
        raise CartNotFound("no such cart", cart_id=str(cart_id))
    if cart["status"] == CartStatus.CONVERTED.value and cart["order_id"] == order_id:
        return ConvertResult(cart_id=cart_id, status=cart["status"], order_id=order_id)
    if cart["status"] == CartStatus.LOCKED.value and cart["locked_by"] != workflow_id:
        raise CartLocked("another checkout holds this cart", cart_id=str(cart_id))
    if cart["status"] != CartStatus.LOCKED.value:
        raise CartNotLocked(
            f"the cart is {cart['status']}, not locked by this checkout",
            cart_id=str(cart_id),
            status=cart["status"],
        )
    cart = await repo.set_cart(session, cart_id, status=CartStatus.CONVERTED.value, order_id=order_id)
    return ConvertResult(cart_id=cart_id, status=cart["status"], order_id=order_id)


async def abandon_expired(
    session: AsyncSession, now: datetime | None = None, *, batch: int = ABANDON_BATCH
) -> int:
    """Mark active carts past their expiry as abandoned; how many."""
    return await repo.abandon_expired(session, now or datetime.now(UTC), batch)
