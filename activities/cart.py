"""Activities of the cart service, served on task queue ``cart`` by ``python worker.py cart``.

Contract for the checkout saga: ``cart.lock`` (the semantic lock, first step), its compensation
``cart.unlock``, and ``cart.convert`` once the order is confirmed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from core.activity_support import business_errors, idempotent_write
from core.db import SessionFactory
from core.settings import Settings
from services.cart import service
from services.cart.models import ledger
from services.cart.schemas import LockedItem, WorkflowId

TASK_QUEUE = "cart"

IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LockCartInput(_In):
    idempotency_key: IdempotencyKey
    user_id: uuid.UUID
    workflow_id: WorkflowId


class LockCartResult(BaseModel):
    cart_id: uuid.UUID
    version: int
    currency: str
    items: list[LockedItem]  # variant_id, product_id, quantity, unit_price_amount (snapshot)


class UnlockCartInput(_In):
    idempotency_key: IdempotencyKey
    cart_id: uuid.UUID
    workflow_id: WorkflowId


class UnlockCartResult(BaseModel):
    cart_id: uuid.UUID
    status: str
    unlocked: bool  # False: not locked by this workflow, nothing done


class ConvertCartInput(_In):
    idempotency_key: IdempotencyKey
    cart_id: uuid.UUID
    workflow_id: WorkflowId
    order_id: uuid.UUID


class ConvertCartResult(BaseModel):
    cart_id: uuid.UUID
    status: str
    order_id: uuid.UUID


class AbandonExpiredInput(_In):
    batch: int = Field(default=service.ABANDON_BATCH, ge=1, le=10_000)


class AbandonExpiredResult(BaseModel):
    abandoned: int


class CartActivities:
    """Adapts ``services.cart`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    @activity.defn(name="cart.lock")
    async def lock(self, inp: LockCartInput) -> LockCartResult:
        """Lock the user's cart for this checkout and return its lines. Refuses ``CartEmpty``,
        ``CartLocked`` (another workflow holds it). Same workflow again: the same lines."""

        async def effect(s: AsyncSession) -> LockCartResult:
            r = await service.lock(s, inp.user_id, inp.workflow_id)
            return LockCartResult(cart_id=r.cart_id, version=r.version, currency=r.currency, items=r.items)

        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="cart.lock",
            request=inp,
            result_type=LockCartResult,
            effect=effect,
        )

    @activity.defn(name="cart.unlock")
    async def unlock(self, inp: UnlockCartInput) -> UnlockCartResult:
        """Compensation of cart.lock. Never refuses except ``CartNotFound``."""

        async def effect(s: AsyncSession) -> UnlockCartResult:
            r = await service.unlock(s, inp.cart_id, inp.workflow_id)
            return UnlockCartResult(cart_id=r.cart_id, status=r.status, unlocked=r.unlocked)

        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="cart.unlock",
            request=inp,
            result_type=UnlockCartResult,
            effect=effect,
        )

    @activity.defn(name="cart.convert")
    async def convert(self, inp: ConvertCartInput) -> ConvertCartResult:
        """The cart became an order. Refuses ``CartLocked`` (other workflow), ``CartNotLocked``,
        ``CartNotFound``. Same order again: no-op."""

        async def effect(s: AsyncSession) -> ConvertCartResult:
            r = await service.convert(s, inp.cart_id, inp.workflow_id, inp.order_id)
            return ConvertCartResult(cart_id=r.cart_id, status=r.status, order_id=r.order_id)

        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="cart.convert",
            request=inp,
            result_type=ConvertCartResult,
            effect=effect,
        )

    @activity.defn(name="cart.abandon_expired")
    async def abandon_expired(self, inp: AbandonExpiredInput) -> AbandonExpiredResult:
        """Maintenance (a schedule): active carts past their expiry become abandoned, up to ``batch``.
        Naturally idempotent (no key): a second run finds nothing left to abandon."""
        with business_errors():
            async with self.sessions() as s, s.begin():
                return AbandonExpiredResult(abandoned=await service.abandon_expired(s, batch=inp.batch))


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py cart`` registers (besides ``cart.ping``)."""
    acts = CartActivities(sessions)
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
