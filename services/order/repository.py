"""All SQL of the order service. Functions take the caller's session and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from core import partitions
from services.order.models import (
    Order,
    OrderItem,
    OrderNote,
    OrderStatusHistory,
    ShippingAddress,
    order_number_seq,
)

HISTORY_TABLE = "order_status_history"


async def next_order_number(session: AsyncSession) -> tuple[int, datetime]:
    """The next value of the shared order number sequence and the transaction's time."""
    row = (await session.execute(select(order_number_seq.next_value(), func.now()))).one()
    return int(row[0]), row[1]


async def insert_order(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(Order).values(**values))


async def insert_items(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(insert(OrderItem), rows)


async def insert_address(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(ShippingAddress).values(**values))


async def insert_history(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    from_status: str | None,
    to_status: str,
    reason: str | None,
    actor: str,
) -> None:
    # clock_timestamp(): several changes in one transaction keep their order.
    await session.execute(
        insert(OrderStatusHistory).values(
            id=uuid.uuid4(),
            created_at=func.clock_timestamp(),
            order_id=order_id,
            order_user_id=user_id,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
            actor=actor,
        )
    )


async def order_exists(session: AsyncSession, order_id: uuid.UUID) -> bool:
    # idx_orders_id on each partition.
    found = await session.execute(select(col(Order.id)).where(col(Order.id) == order_id).limit(1))
    return found.first() is not None


async def get_order(
    session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID | None = None, *, for_update: bool = False
) -> Order | None:
    """With ``user_id`` the query is pruned to one partition; without, ``idx_orders_id`` on each."""
    stmt = select(Order).where(col(Order.id) == order_id).execution_options(populate_existing=True)
    if user_id is not None:
        stmt = stmt.where(col(Order.user_id) == user_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalars().first()


async def get_order_by_number(session: AsyncSession, order_number: str) -> Order | None:
    # idx_orders_order_number on each partition.
    stmt = select(Order).where(col(Order.order_number) == order_number)
    return (await session.execute(stmt)).scalars().first()


async def update_order(session: AsyncSession, order: Order, values: dict[str, Any]) -> int | None:
    """Optimistic update: applies only if the row still has ``order.version``; returns the new version."""
    stmt = (
        update(Order)
        .where(
            col(Order.id) == order.id,
            col(Order.user_id) == order.user_id,
            col(Order.version) == order.version,
        )
        .values(**values, version=col(Order.version) + 1, updated_at=func.now())
        .returning(col(Order.version))
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_items(session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID) -> Sequence[OrderItem]:
    # idx_order_items_order
    stmt = (
        select(OrderItem)
        .where(col(OrderItem.order_id) == order_id, col(OrderItem.order_user_id) == user_id)
        .order_by(col(OrderItem.line_no))
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalars().all()


async def get_items_for_update(
    session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID
) -> Sequence[OrderItem]:
    stmt = (
        select(OrderItem)
        .where(col(OrderItem.order_id) == order_id, col(OrderItem.order_user_id) == user_id)
        .order_by(col(OrderItem.line_no))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalars().all()


async def add_returned_quantity(session: AsyncSession, item_id: uuid.UUID, quantity: int) -> int | None:
    """Atomic and guarded: never beyond the bought quantity. Returns the new returned quantity."""
    stmt = (
        update(OrderItem)
        .where(
            col(OrderItem.id) == item_id,
            col(OrderItem.returned_quantity) + quantity <= col(OrderItem.quantity),
        )
        .values(returned_quantity=col(OrderItem.returned_quantity) + quantity)
        .returning(col(OrderItem.returned_quantity))
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_address(
    session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID
) -> ShippingAddress | None:
    # uq_shipping_addresses_order
    stmt = select(ShippingAddress).where(
        col(ShippingAddress.order_id) == order_id, col(ShippingAddress.user_id) == user_id
    )
    return (await session.execute(stmt)).scalars().first()


async def get_history(session: AsyncSession, order_id: uuid.UUID) -> Sequence[OrderStatusHistory]:
    # idx_order_status_history_order (on each monthly partition)
    stmt = (
        select(OrderStatusHistory)
        .where(col(OrderStatusHistory.order_id) == order_id)
        .order_by(col(OrderStatusHistory.created_at), col(OrderStatusHistory.id))
    )
    return (await session.execute(stmt)).scalars().all()


async def insert_note(session: AsyncSession, values: dict[str, Any]) -> OrderNote:
    stmt = select(OrderNote).from_statement(insert(OrderNote).values(**values).returning(OrderNote))
    return (await session.execute(stmt)).scalars().one()


async def get_notes(
    session: AsyncSession, order_id: uuid.UUID, visibilities: Sequence[str]
) -> Sequence[OrderNote]:
    # idx_order_notes_order
    stmt = (
        select(OrderNote)
        .where(col(OrderNote.order_id) == order_id, col(OrderNote.visibility).in_(visibilities))
        .order_by(col(OrderNote.created_at), col(OrderNote.id))
    )
    return (await session.execute(stmt)).scalars().all()


async def list_orders(
    session: AsyncSession,
    *,
    user_id: uuid.UUID | None,
    statuses: Sequence[str] | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[Order]:
    """Newest first, keyset-paginated on (placed_at, id).

    A user's orders: one partition, ``idx_orders_user_placed`` (or ``idx_orders_user_status`` with a
    status filter). Support's list by status (no user): ``idx_orders_status_placed`` on each partition.
    """
    stmt = select(Order)
    if user_id is not None:
        stmt = stmt.where(col(Order.user_id) == user_id)
    if statuses:
        stmt = stmt.where(col(Order.status).in_(statuses))
    if after is not None:
        stmt = stmt.where(tuple_(col(Order.placed_at), col(Order.id)) < tuple_(after[0], after[1]))
    stmt = stmt.order_by(col(Order.placed_at).desc(), col(Order.id).desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def existing_partitions(session: AsyncSession, parent: str) -> set[str]:
    return await partitions.partition_names(session, parent)


async def create_history_partitions(session: AsyncSession, today: date, months_ahead: int) -> list[str]:
    """Create the missing monthly partitions of ``order_status_history``; return their names."""
    # One maintenance run at a time: CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('order_status_history_partitions'))"))
    before = await existing_partitions(session, HISTORY_TABLE)
    for ddl in partitions.monthly_partitions_ddl(
        HISTORY_TABLE, today, months_back=0, months_ahead=months_ahead
    ):
        await session.execute(text(ddl))
    after = await existing_partitions(session, HISTORY_TABLE)
    return sorted(after - before)
