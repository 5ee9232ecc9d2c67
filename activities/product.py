"""Activities of the product service, served on task queue ``product`` by ``python worker.py product``.

Contract for the sagas: pricing (a read), inventory reservation with its compensation (release),
pricing and reservation in one step (what the checkout uses),
commit after the pivot, restock for returns, and the reservation-expiry sweep.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from core.activity_support import idempotent_write, read
from core.db import SessionFactory
from core.settings import Settings
from services.product import service
from services.product.models import ledger
from services.product.schemas import MovedLine, PricedLine, StockLine

TASK_QUEUE = "product"

R = TypeVar("R", bound=BaseModel)

IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Lines = Annotated[list[StockLine], Field(min_length=1, max_length=200)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceItemsInput(_In):
    lines: Lines


class PriceItemsResult(BaseModel):
    lines: list[PricedLine]
    subtotal_amount: int
    currency: str
    total_weight_grams: int


class ReserveInventoryInput(_In):
    idempotency_key: IdempotencyKey
    order_id: uuid.UUID
    lines: Lines
    ttl_seconds: Annotated[int, Field(ge=30, le=7 * 24 * 3600)] = 900


class ReserveInventoryResult(BaseModel):
    reservation_ids: list[uuid.UUID]
    expires_at: datetime


class PriceAndReserveResult(PriceItemsResult):
    reservation_ids: list[uuid.UUID]
    expires_at: datetime


class ReleaseInventoryInput(_In):
    idempotency_key: IdempotencyKey
    order_id: uuid.UUID


class ReleaseInventoryResult(BaseModel):
    released_lines: list[MovedLine]  # empty when nothing was active (already released, expired ...)


class CommitInventoryInput(_In):
    idempotency_key: IdempotencyKey
    order_id: uuid.UUID


class CommitInventoryResult(BaseModel):
    committed_lines: list[MovedLine]
    already_committed: bool


class RestockInput(_In):
    idempotency_key: IdempotencyKey
    lines: Lines


class RestockResult(BaseModel):
    restocked_lines: list[MovedLine]


class ExpireReservationsInput(_In):
    pass


class ExpireReservationsResult(BaseModel):
    expired: int


class ProductActivities:
    """Adapts ``services.product`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    @activity.defn(name="product.price_items")
    async def price_items(self, inp: PriceItemsInput) -> PriceItemsResult:
        """Current unit prices, line amounts, subtotal and weight. Refuses ``VariantUnavailable``
        (unknown/inactive variant or product) and ``MixedCurrencies``."""

        async def q(s: AsyncSession) -> PriceItemsResult:
            return PriceItemsResult.model_validate((await service.price_items(s, inp.lines)).model_dump())

        return await read(self.sessions, q)

    @activity.defn(name="product.reserve_inventory")
    async def reserve_inventory(self, inp: ReserveInventoryInput) -> ReserveInventoryResult:
        """Hold stock for the order, all lines or none. Refuses ``OutOfStock`` (context ``variants``:
        variant_id, requested, available), ``VariantUnavailable``, ``ReservationExists``."""

        async def effect(s: AsyncSession) -> ReserveInventoryResult:
            r = await service.reserve(s, inp.order_id, inp.lines, timedelta(seconds=inp.ttl_seconds))
            return ReserveInventoryResult(reservation_ids=r.reservation_ids, expires_at=r.expires_at)

        return await self._write(
            inp.idempotency_key, "product.reserve_inventory", inp, ReserveInventoryResult, effect
        )

    @activity.defn(name="product.price_and_reserve")
    async def price_and_reserve(self, inp: ReserveInventoryInput) -> PriceAndReserveResult:
        """The checkout's product step: price the lines and hold their stock, one transaction. The
        prices are kept with the idempotency key, so a retry answers the prices it reserved at.
        Refuses like ``price_items`` and ``reserve_inventory``. Compensation: ``release_inventory``."""

        async def effect(s: AsyncSession) -> PriceAndReserveResult:
            quote, held = await service.price_and_reserve(
                s, inp.order_id, inp.lines, timedelta(seconds=inp.ttl_seconds)
            )
            return PriceAndReserveResult(
                **quote.model_dump(), reservation_ids=held.reservation_ids, expires_at=held.expires_at
            )

        return await self._write(
            inp.idempotency_key, "product.price_and_reserve", inp, PriceAndReserveResult, effect
        )

    @activity.defn(name="product.release_inventory")
    async def release_inventory(self, inp: ReleaseInventoryInput) -> ReleaseInventoryResult:
        """Compensation of reserve_inventory: give the order's active reservation back. Never refuses."""

        async def effect(s: AsyncSession) -> ReleaseInventoryResult:
            return ReleaseInventoryResult(released_lines=await service.release(s, inp.order_id))

        return await self._write(
            inp.idempotency_key, "product.release_inventory", inp, ReleaseInventoryResult, effect
        )

    @activity.defn(name="product.commit_inventory")
    async def commit_inventory(self, inp: CommitInventoryInput) -> CommitInventoryResult:
        """After payment: the reserved units leave stock. Idempotent per order. Refuses
        ``ReservationNotFound``, ``ReservationReleased``, ``OutOfStock`` (expired and stock gone)."""

        async def effect(s: AsyncSession) -> CommitInventoryResult:
            r = await service.commit(s, inp.order_id)
            return CommitInventoryResult(
                committed_lines=r.committed_lines, already_committed=r.already_committed
            )

        return await self._write(
            inp.idempotency_key, "product.commit_inventory", inp, CommitInventoryResult, effect
        )

    @activity.defn(name="product.restock")
    async def restock(self, inp: RestockInput) -> RestockResult:
        """Returned units back on hand. Refuses ``VariantNotFound``."""

        async def effect(s: AsyncSession) -> RestockResult:
            return RestockResult(restocked_lines=await service.restock(s, inp.lines))

        return await self._write(inp.idempotency_key, "product.restock", inp, RestockResult, effect)

    @activity.defn(name="product.expire_reservations")
    async def expire_reservations(self, inp: ExpireReservationsInput) -> ExpireReservationsResult:
        """Sweep: release active reservations past their expiry (idempotent by nature, no key)."""

        async def q(s: AsyncSession) -> ExpireReservationsResult:
            return ExpireReservationsResult(expired=await service.expire_reservations(s))

        return await read(self.sessions, q)

    async def _write(
        self,
        key: str,
        operation: str,
        request: BaseModel,
        result_type: type[R],
        effect: Callable[[AsyncSession], Awaitable[R]],
    ) -> R:
        return await idempotent_write(
            self.sessions,
            ledger,
            key=key,
            operation=operation,
            request=request,
            result_type=result_type,
            effect=effect,
        )


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py product`` registers (besides ``product.ping``)."""
    acts = ProductActivities(sessions)
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
