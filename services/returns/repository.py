"""All SQL of the return service. Functions take the caller's ``AsyncSession`` and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.returns.models import (
    Refund,
    RefundStatus,
    ReturnAuthorization,
    ReturnItem,
    ReturnRequest,
    ReturnStatus,
    ReturnStatusHistory,
    ReturnTracking,
)

# Returns that no longer hold their items: these quantities are returnable again.
VOID_STATUSES = (ReturnStatus.REJECTED, ReturnStatus.CANCELLED, ReturnStatus.EXPIRED)
INSPECTED_STATUSES = (ReturnStatus.INSPECTED, ReturnStatus.REFUNDED, ReturnStatus.CLOSED)


async def lock_order(session: AsyncSession, order_id: uuid.UUID) -> None:
    """Serialize return requests of one order until the transaction ends (quantity accounting)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"return-order:{order_id}"}
    )


async def get_request(
    session: AsyncSession, return_id: uuid.UUID, *, for_update: bool = False
) -> ReturnRequest | None:
    stmt = (
        select(ReturnRequest)
        .where(col(ReturnRequest.id) == return_id)
        .execution_options(populate_existing=True)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).first()


async def insert_request(session: AsyncSession, values: dict[str, Any]) -> bool:
    result = await session.execute(
        insert(ReturnRequest).values(**values).on_conflict_do_nothing().returning(col(ReturnRequest.id))
    )
    return result.first() is not None


async def claimed_quantities(session: AsyncSession, order_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """Per order line, the units held by the order's live returns: accepted once inspected, else requested."""
    rows = await session.execute(
        select(
            col(ReturnItem.order_item_id),
            func.sum(func.coalesce(col(ReturnItem.quantity_accepted), col(ReturnItem.quantity_requested))),
        )
        .join(ReturnRequest, col(ReturnRequest.id) == col(ReturnItem.return_request_id))
        .where(col(ReturnRequest.order_id) == order_id, col(ReturnRequest.status).not_in(VOID_STATUSES))
        .group_by(col(ReturnItem.order_item_id))
    )
    return {item_id: int(qty) for item_id, qty in rows}


async def accepted_quantities(
    session: AsyncSession, order_id: uuid.UUID, *, excluding: uuid.UUID
) -> dict[uuid.UUID, int]:
    """Per order line, the units accepted by the order's other inspected returns."""
    rows = await session.execute(
        select(col(ReturnItem.order_item_id), func.sum(col(ReturnItem.quantity_accepted)))
        .join(ReturnRequest, col(ReturnRequest.id) == col(ReturnItem.return_request_id))
        .where(
            col(ReturnRequest.order_id) == order_id,
            col(ReturnRequest.id) != excluding,
            col(ReturnRequest.status).in_(INSPECTED_STATUSES),
            col(ReturnItem.quantity_accepted).is_not(None),
        )
        .group_by(col(ReturnItem.order_item_id))
    )
    return {item_id: int(qty or 0) for item_id, qty in rows}


async def items(session: AsyncSession, return_id: uuid.UUID) -> Sequence[ReturnItem]:
    stmt = (
        select(ReturnItem)
        .where(col(ReturnItem.return_request_id) == return_id)
        .order_by(col(ReturnItem.created_at), col(ReturnItem.order_item_id))
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).all()


async def update_request_if(
    session: AsyncSession, return_id: uuid.UUID, *, status: str, values: dict[str, Any]
) -> bool:
    """Update the return only while it still has ``status`` (bumps version)."""
    result = await session.execute(
        update(ReturnRequest)
        .where(col(ReturnRequest.id) == return_id, col(ReturnRequest.status) == status)
        .values(**values, version=col(ReturnRequest.version) + 1, updated_at=func.now())
        .returning(col(ReturnRequest.id))
        .execution_options(synchronize_session=False)
    )
    return result.first() is not None


async def add_history(
    session: AsyncSession,
    return_id: uuid.UUID,
    from_status: str | None,
    to_status: str,
    actor: str,
    note: str | None,
) -> None:
    session.add(
        ReturnStatusHistory(
            return_request_id=return_id, from_status=from_status, to_status=to_status, actor=actor, note=note
        )
    )
    await session.flush()


async def history(session: AsyncSession, return_id: uuid.UUID) -> Sequence[ReturnStatusHistory]:
    stmt = (
        select(ReturnStatusHistory)
        .where(col(ReturnStatusHistory.return_request_id) == return_id)
        .order_by(col(ReturnStatusHistory.created_at))
    )
    return (await session.scalars(stmt)).all()


async def authorization(session: AsyncSession, return_id: uuid.UUID) -> ReturnAuthorization | None:
    stmt = (
        select(ReturnAuthorization)
        .where(col(ReturnAuthorization.return_request_id) == return_id)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).first()


async def authorization_by_tracking(
    session: AsyncSession, tracking_number: str
) -> ReturnAuthorization | None:
    stmt = select(ReturnAuthorization).where(
        col(ReturnAuthorization.label_tracking_number) == tracking_number
    )
    return (await session.scalars(stmt)).first()


async def set_authorization_status(
    session: AsyncSession, return_id: uuid.UUID, *, from_: str, to: str
) -> None:
    await session.execute(
        update(ReturnAuthorization)
        .where(
            col(ReturnAuthorization.return_request_id) == return_id, col(ReturnAuthorization.status) == from_
        )
        .values(status=to, updated_at=func.now())
        .execution_options(synchronize_session=False)
    )


async def refunds(session: AsyncSession, return_id: uuid.UUID) -> Sequence[Refund]:
    stmt = (
        select(Refund)
        .where(col(Refund.return_request_id) == return_id)
        .order_by(col(Refund.created_at))
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).all()


async def refund_by_provider_id(session: AsyncSession, provider_refund_id: str) -> Refund | None:
    stmt = select(Refund).where(col(Refund.provider_refund_id) == provider_refund_id)
    return (await session.scalars(stmt.execution_options(populate_existing=True))).first()


async def committed_refund_total(
    session: AsyncSession, return_id: uuid.UUID, *, excluding: uuid.UUID | None
) -> int:
    """Sum of the return's pending and succeeded refunds (a failed refund commits nothing)."""
    stmt = select(func.coalesce(func.sum(col(Refund.amount)), 0)).where(
        col(Refund.return_request_id) == return_id, col(Refund.status) != RefundStatus.FAILED
    )
    if excluding is not None:
        stmt = stmt.where(col(Refund.id) != excluding)
    return int((await session.execute(stmt)).scalar_one())


async def succeeded_refund_total(session: AsyncSession, return_id: uuid.UUID) -> int:
    stmt = select(func.coalesce(func.sum(col(Refund.amount)), 0)).where(
        col(Refund.return_request_id) == return_id, col(Refund.status) == RefundStatus.SUCCEEDED
    )
    return int((await session.execute(stmt)).scalar_one())


async def insert_tracking(session: AsyncSession, values: dict[str, Any]) -> bool:
    result = await session.execute(
        insert(ReturnTracking)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[ReturnTracking.carrier_event_id])
        .returning(col(ReturnTracking.id))
    )
    return result.first() is not None


async def requests_of_user(
    session: AsyncSession, user_id: uuid.UUID, limit: int = 50
) -> Sequence[ReturnRequest]:
    stmt = (
        select(ReturnRequest)
        .where(col(ReturnRequest.user_id) == user_id)
        .order_by(col(ReturnRequest.requested_at).desc())
        .limit(limit)
    )
    return (await session.scalars(stmt)).all()
