"""Cart service on the real cart_db: one open cart per user under concurrency, hashed guest tokens,
item edits with optimistic versions, guest merge, and the checkout's semantic lock (lock / unlock /
convert) through the activities, idempotent by key."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from activities.cart import CartActivities, ConvertCartInput, LockCartInput, UnlockCartInput
from core.db import SessionFactory
from services.cart import service
from services.cart.errors import (
    CartItemNotFound,
    CartLocked,
    CartNotLocked,
    ConcurrentUpdate,
    CurrencyMismatch,
    QuantityLimitExceeded,
)
from services.cart.models import cart_items, carts
from services.cart.schemas import AddItem, CartView, UpdateItem

T = TypeVar("T")


@pytest.fixture
def db(sessions: dict[str, SessionFactory]) -> SessionFactory:
    return sessions["cart"]


@pytest.fixture
def acts(db: SessionFactory) -> CartActivities:
    return CartActivities(db)


async def tx(db: SessionFactory, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
    """``fn(session, *args, **kw)`` in its own transaction."""
    async with db() as s, s.begin():
        return await fn(s, *args, **kw)


def item(
    quantity: int = 1,
    *,
    variant: uuid.UUID | None = None,
    price: int = 1000,
    currency: str = "USD",
    **kw: Any,
) -> AddItem:
    return AddItem(
        variant_id=variant or uuid.uuid4(),
        product_id=uuid.uuid4(),
        quantity=quantity,
        unit_price_amount=price,
        currency=currency,
        **kw,
    )


async def cart_with_items(db: SessionFactory, *items: AddItem) -> tuple[uuid.UUID, CartView]:
    user = uuid.uuid4()
    cart = await tx(db, service.get_or_create_user_cart, user)
    for i in items:
        cart = await tx(db, service.add_item, cart.id, i)
    return user, cart


async def db_cart(db: SessionFactory, cart_id: uuid.UUID) -> dict[str, Any]:
    async def q(s: AsyncSession) -> dict[str, Any]:
        return dict((await s.execute(select(carts).where(carts.c.id == cart_id))).mappings().one())

    return await tx(db, q)


async def db_items(db: SessionFactory, cart_id: uuid.UUID) -> dict[uuid.UUID, int]:
    async def q(s: AsyncSession) -> dict[uuid.UUID, int]:
        rows = await s.execute(
            select(cart_items.c.variant_id, cart_items.c.quantity).where(cart_items.c.cart_id == cart_id)
        )
        return {r.variant_id: r.quantity for r in rows}

    return await tx(db, q)


# --- get-or-create -------------------------------------------------------------------------


async def test_one_open_cart_per_user_under_concurrent_get_or_create(db: SessionFactory) -> None:
    user = uuid.uuid4()
    views = await asyncio.gather(*(tx(db, service.get_or_create_user_cart, user) for _ in range(20)))
    assert len({v.id for v in views}) == 1

    async def count(s: AsyncSession) -> int:
        return int((await s.execute(select(func.count()).where(carts.c.user_id == user))).scalar_one())

    assert await tx(db, count) == 1


async def test_guest_token_is_returned_once_and_stored_hashed(db: SessionFactory) -> None:
    first = await tx(db, service.get_or_create_guest_cart, None)
    token = first.guest_token
    assert token and len(token) >= 40
    row = await db_cart(db, first.cart.id)
    assert row["guest_token_hash"] == hashlib.sha256(token.encode()).hexdigest() != token
    assert row["user_id"] is None
    again = await tx(db, service.get_or_create_guest_cart, token)
    assert again.cart.id == first.cart.id and again.guest_token is None
    other = await tx(db, service.get_or_create_guest_cart, "forged-token")
    assert other.cart.id != first.cart.id and other.guest_token not in (None, "forged-token")


# --- edits ---------------------------------------------------------------------------------


async def test_add_update_remove_items(db: SessionFactory) -> None:
    v = uuid.uuid4()
    _, cart = await cart_with_items(db, item(2, variant=v, price=1000))
    assert cart.version == 2
    cart = await tx(db, service.add_item, cart.id, item(3, variant=v, price=1200))
    assert [(i.quantity, i.unit_price_amount) for i in cart.items] == [(5, 1200)]  # one line, price refreshed
    assert cart.subtotal_amount == 6000 and cart.version == 3
    line = cart.items[0].id
    cart = await tx(db, service.update_item, cart.id, line, UpdateItem(quantity=7))
    assert await db_items(db, cart.id) == {v: 7}
    with pytest.raises(QuantityLimitExceeded):
        await tx(db, service.add_item, cart.id, item(93, variant=v))
    assert await db_items(db, cart.id) == {v: 7}
    assert (await db_cart(db, cart.id))["version"] == cart.version  # the refused edit left no trace
    cart = await tx(db, service.add_item, cart.id, item(92, variant=v))
    assert await db_items(db, cart.id) == {v: 99}
    cart = await tx(db, service.remove_item, cart.id, line)
    assert cart.items == [] and await db_items(db, cart.id) == {}
    with pytest.raises(CartItemNotFound):
        await tx(db, service.remove_item, cart.id, line)


async def test_stale_version_is_refused(db: SessionFactory) -> None:
    _, cart = await cart_with_items(db)
    v1 = cart.version
    cart = await tx(db, service.add_item, cart.id, item(1, expected_version=v1))
    with pytest.raises(ConcurrentUpdate):
        await tx(db, service.add_item, cart.id, item(1, expected_version=v1))
    assert len(await db_items(db, cart.id)) == 1
    # ten concurrent edits from the same read: exactly one wins
    results = await asyncio.gather(
        *(tx(db, service.add_item, cart.id, item(1, expected_version=cart.version)) for _ in range(10)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, ConcurrentUpdate) for r in results if isinstance(r, BaseException))
    assert len(await db_items(db, cart.id)) == 2
    assert (await db_cart(db, cart.id))["version"] == cart.version + 1


async def test_invalid_input_is_refused_with_nothing_written(db: SessionFactory) -> None:
    _, cart = await cart_with_items(db, item(1))
    for bad in (
        {"quantity": 0},
        {"quantity": 1000},
        {"quantity": 100},
        {"unit_price_amount": -1},
        {"currency": "usd"},
        {"expected_version": 0},
    ):
        with pytest.raises(ValidationError):
            AddItem(**{**item(1).model_dump(), **bad})
    with pytest.raises(ValidationError):
        UpdateItem(quantity=0)
    with pytest.raises(CurrencyMismatch):
        await tx(db, service.add_item, cart.id, item(1, currency="EUR"))
    row = await db_cart(db, cart.id)
    assert (row["version"], row["currency"]) == (cart.version, "USD")
    assert len(await db_items(db, cart.id)) == 1
    # an empty cart takes the currency of its first item
    _, empty = await cart_with_items(db)
    euro = await tx(db, service.add_item, empty.id, item(1, currency="EUR"))
    assert euro.currency == "EUR"


# --- guest merge ---------------------------------------------------------------------------


async def test_guest_cart_merges_into_the_users_cart_at_login(db: SessionFactory) -> None:
    shared, only_guest, only_user = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    guest = await tx(db, service.get_or_create_guest_cart, None)
    assert guest.guest_token
    await tx(db, service.add_item, guest.cart.id, item(60, variant=shared))
    await tx(db, service.add_item, guest.cart.id, item(2, variant=only_guest))
    user, user_cart = await cart_with_items(db, item(50, variant=shared), item(1, variant=only_user))

    result = await tx(db, service.merge_guest_cart, user, guest.guest_token)
    assert result.cart.id == user_cart.id and result.merged_lines == 2
    assert await db_items(db, user_cart.id) == {shared: 99, only_guest: 2, only_user: 1}  # capped at 99
    g = await db_cart(db, guest.cart.id)
    assert (g["status"], g["merged_into_cart_id"]) == ("merged", user_cart.id)
    again = await tx(db, service.merge_guest_cart, user, guest.guest_token)
    assert again.merged_lines == 0 and await db_items(db, user_cart.id) == {
        shared: 99,
        only_guest: 2,
        only_user: 1,
    }
    # the dead token now gets a fresh guest cart
    fresh = await tx(db, service.get_or_create_guest_cart, guest.guest_token)
    assert fresh.cart.id != guest.cart.id and fresh.guest_token


async def test_merge_into_a_new_user_takes_the_guest_cart_whole(db: SessionFactory) -> None:
    guest = await tx(db, service.get_or_create_guest_cart, None, currency="EUR")
    assert guest.guest_token
    v = uuid.uuid4()
    await tx(db, service.add_item, guest.cart.id, item(3, variant=v, currency="EUR"))
    result = await tx(db, service.merge_guest_cart, uuid.uuid4(), guest.guest_token)
    assert result.cart.currency == "EUR" and await db_items(db, result.cart.id) == {v: 3}


# --- the checkout's semantic lock ----------------------------------------------------------


async def test_lock_is_exclusive_idempotent_and_blocks_edits(
    db: SessionFactory, acts: CartActivities
) -> None:
    v = uuid.uuid4()
    user, cart = await cart_with_items(db, item(2, variant=v, price=1500))
    wf_a, wf_b = f"checkout-{uuid.uuid4()}", f"checkout-{uuid.uuid4()}"
    lock_a = LockCartInput(idempotency_key=f"{wf_a}:lock", user_id=user, workflow_id=wf_a)
    locked = await acts.lock(lock_a)
    assert locked.cart_id == cart.id and locked.currency == "USD"
    assert [(i.variant_id, i.quantity, i.unit_price_amount) for i in locked.items] == [(v, 2, 1500)]
    assert await acts.lock(lock_a) == locked  # same key: the first result
    again = await acts.lock(lock_a.model_copy(update={"idempotency_key": f"{wf_a}:lock-retry"}))
    assert again == locked  # same workflow, new key: still the same lock, no new version
    row = await db_cart(db, cart.id)
    assert (row["status"], row["locked_by"], row["version"]) == ("locked", wf_a, locked.version)

    with pytest.raises(ApplicationError) as e:
        await acts.lock(LockCartInput(idempotency_key=f"{wf_b}:lock", user_id=user, workflow_id=wf_b))
    assert e.value.type == "CartLocked"
    with pytest.raises(ApplicationError) as e:  # same key, different request
        await acts.lock(lock_a.model_copy(update={"workflow_id": wf_b}))
    assert e.value.type == "IdempotencyKeyReused"
    with pytest.raises(CartLocked):
        await tx(db, service.add_item, cart.id, item(1))
    with pytest.raises(CartLocked):
        await tx(
            db, service.update_item, cart.id, (await db_cart_items(db, cart.id))[0], UpdateItem(quantity=5)
        )
    assert await db_items(db, cart.id) == {v: 2}
    # the shopper still sees their (locked) cart, not a new one
    assert (await tx(db, service.get_or_create_user_cart, user)).id == cart.id

    not_mine = await acts.unlock(
        UnlockCartInput(idempotency_key=f"{wf_b}:unlock", cart_id=cart.id, workflow_id=wf_b)
    )
    assert not not_mine.unlocked and (await db_cart(db, cart.id))["status"] == "locked"
    unlock_a = UnlockCartInput(idempotency_key=f"{wf_a}:unlock", cart_id=cart.id, workflow_id=wf_a)
    assert (await acts.unlock(unlock_a)).unlocked
    assert (await acts.unlock(unlock_a)).unlocked  # same key: the first result
    twice = await acts.unlock(unlock_a.model_copy(update={"idempotency_key": f"{wf_a}:unlock-2"}))
    assert not twice.unlocked
    row = await db_cart(db, cart.id)
    assert (row["status"], row["locked_by"]) == ("active", None)
    await tx(db, service.add_item, cart.id, item(1))  # editable again
    b = await acts.lock(LockCartInput(idempotency_key=f"{wf_b}:lock-2", user_id=user, workflow_id=wf_b))
    assert len(b.items) == 2


async def db_cart_items(db: SessionFactory, cart_id: uuid.UUID) -> list[uuid.UUID]:
    async def q(s: AsyncSession) -> list[uuid.UUID]:
        return list(
            (await s.execute(select(cart_items.c.id).where(cart_items.c.cart_id == cart_id))).scalars()
        )

    return await tx(db, q)


async def test_concurrent_locks_by_two_workflows_one_wins(db: SessionFactory, acts: CartActivities) -> None:
    user, cart = await cart_with_items(db, item(1))
    wfs = [f"checkout-{uuid.uuid4()}" for _ in range(6)]
    results = await asyncio.gather(
        *(acts.lock(LockCartInput(idempotency_key=f"{w}:lock", user_id=user, workflow_id=w)) for w in wfs),
        return_exceptions=True,
    )
    winners = [w for w, r in zip(wfs, results, strict=True) if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(
        isinstance(r, ApplicationError) and r.type == "CartLocked"
        for r in results
        if isinstance(r, BaseException)
    )
    assert (await db_cart(db, cart.id))["locked_by"] == winners[0]


async def test_empty_cart_cannot_be_locked(db: SessionFactory, acts: CartActivities) -> None:
    for user in (uuid.uuid4(), (await cart_with_items(db))[0]):  # no cart at all; an empty cart
        with pytest.raises(ApplicationError) as e:
            await acts.lock(
                LockCartInput(idempotency_key=f"k-{uuid.uuid4()}", user_id=user, workflow_id="wf")
            )
        assert e.value.type == "CartEmpty"


async def test_convert_after_order_and_fresh_cart_next_time(db: SessionFactory, acts: CartActivities) -> None:
    user, cart = await cart_with_items(db, item(1))
    wf, order = f"checkout-{uuid.uuid4()}", uuid.uuid4()
    with pytest.raises(CartNotLocked):
        await tx(db, service.convert, cart.id, wf, order)
    await acts.lock(LockCartInput(idempotency_key=f"{wf}:lock", user_id=user, workflow_id=wf))
    with pytest.raises(ApplicationError) as e:
        await acts.convert(
            ConvertCartInput(
                idempotency_key="other:convert", cart_id=cart.id, workflow_id="other", order_id=order
            )
        )
    assert e.value.type == "CartLocked"
    conv = ConvertCartInput(idempotency_key=f"{wf}:convert", cart_id=cart.id, workflow_id=wf, order_id=order)
    assert (await acts.convert(conv)).status == "converted"
    assert (
        await acts.convert(conv.model_copy(update={"idempotency_key": f"{wf}:convert-2"}))
    ).order_id == order
    row = await db_cart(db, cart.id)
    assert (row["status"], row["order_id"]) == ("converted", order)
    # a late compensation does not reopen a converted cart
    assert not (
        await acts.unlock(UnlockCartInput(idempotency_key=f"{wf}:unlock", cart_id=cart.id, workflow_id=wf))
    ).unlocked
    fresh = await tx(db, service.get_or_create_user_cart, user)
    assert fresh.id != cart.id and fresh.items == [] and fresh.status == "active"
