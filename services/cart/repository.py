"""All SQL of the cart service. Functions take the caller's ``AsyncSession``; none commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import RowMapping, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.cart.models import MAX_ITEM_QUANTITY, OPEN_STATUSES, CartStatus, cart_items, carts

_OPEN_PREDICATE = text("status IN ('active', 'locked')")  # the predicate of uq_carts_user_open


async def cart_row(
    session: AsyncSession, cart_id: uuid.UUID, *, for_update: bool = False
) -> RowMapping | None:
    q = select(carts).where(carts.c.id == cart_id)
    if for_update:
        q = q.with_for_update()
    return (await session.execute(q)).mappings().first()


async def open_cart_of_user(
    session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False
) -> RowMapping | None:
    q = select(carts).where(carts.c.user_id == user_id, carts.c.status.in_(OPEN_STATUSES))
    if for_update:
        q = q.with_for_update()
    return (await session.execute(q)).mappings().first()


async def cart_by_token_hash(
    session: AsyncSession, token_hash: str, *, for_update: bool = False
) -> RowMapping | None:
    q = select(carts).where(carts.c.guest_token_hash == token_hash)
    if for_update:
        q = q.with_for_update()
    return (await session.execute(q)).mappings().first()


async def insert_user_cart(session: AsyncSession, user_id: uuid.UUID, currency: str, ttl: timedelta) -> None:
    """Create the user's open cart unless one exists (a concurrent creator wins, nothing is raised)."""
    q = (
        insert(carts)
        .values(id=uuid.uuid4(), user_id=user_id, currency=currency, expires_at=func.now() + ttl)
        .on_conflict_do_nothing(index_elements=[carts.c.user_id], index_where=_OPEN_PREDICATE)
    )
    await session.execute(q)


async def insert_guest_cart(
    session: AsyncSession, token_hash: str, currency: str, ttl: timedelta
) -> RowMapping:
    q = (
        insert(carts)
        .values(id=uuid.uuid4(), guest_token_hash=token_hash, currency=currency, expires_at=func.now() + ttl)
        .returning(*carts.c)
    )
    return (await session.execute(q)).mappings().one()


async def bump_version(
    session: AsyncSession, cart_id: uuid.UUID, expected_version: int | None, ttl: timedelta
) -> RowMapping | None:
    """Lock an active cart for an edit: version + 1 (if it still is ``expected_version``); None if refused."""
    q = update(carts).where(carts.c.id == cart_id, carts.c.status == CartStatus.ACTIVE.value)
    if expected_version is not None:
        q = q.where(carts.c.version == expected_version)
    q2 = q.values(version=carts.c.version + 1, updated_at=func.now(), expires_at=func.now() + ttl).returning(
        *carts.c
    )
    return (await session.execute(q2)).mappings().first()


async def set_cart(session: AsyncSession, cart_id: uuid.UUID, **values: Any) -> RowMapping:
    """Update a cart (whose row the caller has locked); version + 1 unless ``version`` is given."""
    q = (
        update(carts)
        .where(carts.c.id == cart_id)
        .values(**{"version": carts.c.version + 1, "updated_at": func.now(), **values})
        .returning(*carts.c)
    )
    return (await session.execute(q)).mappings().one()


async def items_of(session: AsyncSession, cart_id: uuid.UUID) -> Sequence[RowMapping]:
    q = (
        select(cart_items)
        .where(cart_items.c.cart_id == cart_id)
        .order_by(cart_items.c.added_at, cart_items.c.id)
    )
    return (await session.execute(q)).mappings().all()


async def add_or_increment(session: AsyncSession, cart_id: uuid.UUID, values: dict[str, Any]) -> bool:
    """Insert the line or add to its quantity (refreshing the price snapshot); False if that would
    exceed the per-line maximum (nothing changed)."""
    stmt = insert(cart_items).values(id=uuid.uuid4(), cart_id=cart_id, **values)
    q = stmt.on_conflict_do_update(
        index_elements=[cart_items.c.cart_id, cart_items.c.variant_id],
        set_={
            "quantity": cart_items.c.quantity + stmt.excluded.quantity,
            "product_id": stmt.excluded.product_id,
            "unit_price_amount": stmt.excluded.unit_price_amount,
            "currency": stmt.excluded.currency,
            "updated_at": func.now(),
        },
        where=cart_items.c.quantity + stmt.excluded.quantity <= MAX_ITEM_QUANTITY,
    ).returning(cart_items.c.id)
    return (await session.execute(q)).first() is not None


async def merge_line(session: AsyncSession, cart_id: uuid.UUID, values: dict[str, Any]) -> None:
    """Insert the line or add to its quantity, capped at the per-line maximum (guest-cart merge)."""
    stmt = insert(cart_items).values(id=uuid.uuid4(), cart_id=cart_id, **values)
    q = stmt.on_conflict_do_update(
        index_elements=[cart_items.c.cart_id, cart_items.c.variant_id],
        set_={
            "quantity": func.least(cart_items.c.quantity + stmt.excluded.quantity, MAX_ITEM_QUANTITY),
            "updated_at": func.now(),
        },
    )
    await session.execute(q)


async def set_item_quantity(
    session: AsyncSession, cart_id: uuid.UUID, item_id: uuid.UUID, quantity: int
) -> bool:
    q = (
        update(cart_items)
        .where(cart_items.c.id == item_id, cart_items.c.cart_id == cart_id)
        .values(quantity=quantity, updated_at=func.now())
        .returning(cart_items.c.id)
    )
    return (await session.execute(q)).first() is not None


async def delete_item(session: AsyncSession, cart_id: uuid.UUID, item_id: uuid.UUID) -> bool:
    q = (
        cart_items.delete()
        .where(cart_items.c.id == item_id, cart_items.c.cart_id == cart_id)
        .returning(cart_items.c.id)
    )
    return (await session.execute(q)).first() is not None


async def abandon_expired(session: AsyncSession, now: datetime, batch: int) -> int:
    due = (
        select(carts.c.id)
        .where(carts.c.status == CartStatus.ACTIVE.value, carts.c.expires_at <= now)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    q = (
        update(carts)
        .where(carts.c.id == due.c.id)
        .values(status=CartStatus.ABANDONED.value, version=carts.c.version + 1, updated_at=func.now())
        .returning(carts.c.id)
    )
    return len((await session.execute(q)).all())
