"""All SQL of the payment service. Functions take the caller's session and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.payment.models import (
    Payment,
    PaymentMethod,
    PaymentTransaction,
    PaymentWebhook,
    Refund,
    TransactionStatus,
    TransactionType,
)


async def get_payment(
    session: AsyncSession,
    payment_id: uuid.UUID,
    order_id: uuid.UUID | None = None,
    *,
    for_update: bool = False,
) -> Payment | None:
    """With ``order_id`` the query is pruned to one partition; without, ``idx_payments_id`` on each."""
    stmt = select(Payment).where(col(Payment.id) == payment_id).execution_options(populate_existing=True)
    if order_id is not None:
        stmt = stmt.where(col(Payment.order_id) == order_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalars().first()


async def get_payment_by_authorization(
    session: AsyncSession, authorization_id: str, *, for_update: bool = False
) -> Payment | None:
    # idx_payments_provider_authorization on each partition
    stmt = (
        select(Payment)
        .where(col(Payment.provider_authorization_id) == authorization_id)
        .execution_options(populate_existing=True)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalars().first()


async def insert_payment(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(Payment).values(**values))


async def update_payment(session: AsyncSession, payment: Payment, values: dict[str, Any]) -> None:
    """Update a payment locked by the caller (FOR UPDATE); bumps ``version``."""
    await session.execute(
        update(Payment)
        .where(col(Payment.id) == payment.id, col(Payment.order_id) == payment.order_id)
        .values(**values, version=col(Payment.version) + 1, updated_at=func.now())
    )


async def insert_transaction(
    session: AsyncSession,
    payment: Payment,
    *,
    type_: TransactionType,
    amount: int,
    status: TransactionStatus,
    provider_reference: str | None,
    idempotency_key: str | None,
    error_code: str | None = None,
) -> bool:
    """Book one ledger row; a second row for the same provider object and type is ignored
    (``uq_payment_transactions_provider_reference``). Returns whether a row was written."""
    stmt = (
        pg_insert(PaymentTransaction)
        .values(
            id=uuid.uuid4(),
            payment_id=payment.id,
            order_id=payment.order_id,
            type=type_.value,
            amount=amount,
            currency=payment.currency,
            provider_reference=provider_reference,
            status=status.value,
            error_code=error_code,
            idempotency_key=idempotency_key,
        )
        .on_conflict_do_nothing(constraint="uq_payment_transactions_provider_reference")
        .returning(col(PaymentTransaction.id))
    )
    return (await session.execute(stmt)).first() is not None


async def get_transactions(
    session: AsyncSession, payment_id: uuid.UUID, order_id: uuid.UUID
) -> Sequence[PaymentTransaction]:
    # idx_payment_transactions_payment
    stmt = (
        select(PaymentTransaction)
        .where(col(PaymentTransaction.payment_id) == payment_id, col(PaymentTransaction.order_id) == order_id)
        .order_by(col(PaymentTransaction.created_at), col(PaymentTransaction.id))
    )
    return (await session.execute(stmt)).scalars().all()


async def insert_refund(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(Refund).values(**values))


async def get_refunds(session: AsyncSession, payment_id: uuid.UUID, order_id: uuid.UUID) -> Sequence[Refund]:
    # idx_refunds_payment
    stmt = (
        select(Refund)
        .where(col(Refund.payment_id) == payment_id, col(Refund.order_id) == order_id)
        .order_by(col(Refund.created_at), col(Refund.id))
    )
    return (await session.execute(stmt)).scalars().all()


async def order_balance_rows(session: AsyncSession, order_id: uuid.UUID) -> Sequence[Any]:
    """Per payment of the order: its running totals and the sums of its succeeded ledger rows.
    The payments come from one partition; their rows via ``idx_payment_transactions_payment``."""
    t = PaymentTransaction
    succeeded = col(t.status) == TransactionStatus.SUCCEEDED.value

    def booked(kind: TransactionType) -> Any:
        return func.coalesce(func.sum(col(t.amount)).filter(and_(succeeded, col(t.type) == kind.value)), 0)

    stmt = (
        select(
            col(Payment.id),
            col(Payment.currency),
            col(Payment.amount_captured),
            col(Payment.amount_refunded),
            booked(TransactionType.CAPTURE).label("ledger_captured"),
            booked(TransactionType.REFUND).label("ledger_refunded"),
        )
        .select_from(Payment)
        .outerjoin(
            PaymentTransaction,
            and_(col(t.payment_id) == col(Payment.id), col(t.order_id) == col(Payment.order_id)),
        )
        .where(col(Payment.order_id) == order_id)
        .group_by(
            col(Payment.id), col(Payment.currency), col(Payment.amount_captured), col(Payment.amount_refunded)
        )
        .order_by(col(Payment.id))
    )
    return (await session.execute(stmt)).all()


# -- webhooks ----------------------------------------------------------------------------------------


async def insert_webhook(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Store a provider event; ``None`` if this event id was stored before (uq_payment_webhooks_event)."""
    stmt = (
        pg_insert(PaymentWebhook)
        .values(**values)
        .on_conflict_do_nothing(constraint="uq_payment_webhooks_event")
        .returning(col(PaymentWebhook.id))
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_webhook(session: AsyncSession, provider: str, event_id: str) -> PaymentWebhook | None:
    # uq_payment_webhooks_event
    stmt = select(PaymentWebhook).where(
        col(PaymentWebhook.provider) == provider, col(PaymentWebhook.provider_event_id) == event_id
    )
    return (await session.execute(stmt)).scalars().first()


async def finish_webhook(session: AsyncSession, webhook_id: uuid.UUID, values: dict[str, Any]) -> None:
    await session.execute(update(PaymentWebhook).where(col(PaymentWebhook.id) == webhook_id).values(**values))


# -- payment methods ---------------------------------------------------------------------------------


async def upsert_payment_method(session: AsyncSession, values: dict[str, Any]) -> PaymentMethod:
    """Insert, or refresh the stored one when the user saved this card before."""
    new = pg_insert(PaymentMethod).values(**values)
    stmt = new.on_conflict_do_update(
        index_elements=["user_id", "provider", "fingerprint"],
        index_where=col(PaymentMethod.fingerprint).is_not(None),
        set_={
            "token_encrypted": new.excluded.token_encrypted,
            "exp_month": new.excluded.exp_month,
            "exp_year": new.excluded.exp_year,
            "updated_at": func.now(),
        },
    ).returning(PaymentMethod)
    return (
        (
            await session.execute(
                select(PaymentMethod).from_statement(stmt).execution_options(populate_existing=True)
            )
        )
        .scalars()
        .one()
    )


async def get_payment_method(
    session: AsyncSession, method_id: uuid.UUID, user_id: uuid.UUID
) -> PaymentMethod | None:
    stmt = select(PaymentMethod).where(
        col(PaymentMethod.id) == method_id, col(PaymentMethod.user_id) == user_id
    )
    return (await session.execute(stmt)).scalars().first()


async def list_payment_methods(session: AsyncSession, user_id: uuid.UUID) -> Sequence[PaymentMethod]:
    # idx_payment_methods_user
    stmt = (
        select(PaymentMethod)
        .where(col(PaymentMethod.user_id) == user_id)
        .order_by(col(PaymentMethod.created_at), col(PaymentMethod.id))
    )
    return (await session.execute(stmt)).scalars().all()
