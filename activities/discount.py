"""Activities of the discount service, served on task queue ``discount`` by ``python worker.py discount``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from core.activity_support import business_errors, idempotent_write, read
from core.db import SessionFactory
from core.settings import Settings
from services.discount import service
from services.discount.models import ledger
from services.discount.schemas import (
    CURRENCY,
    MAX_AMOUNT,
    AppliedPromotion,
    CartLineIn,
    Committed,
    CouponQuote,
    PromotionEvaluation,
    Released,
    Reservation,
)

TASK_QUEUE = "discount"

IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255)]
Code = Annotated[str, Field(min_length=1, max_length=64)]
Subtotal = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
Currency = Annotated[str, Field(pattern=CURRENCY)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PreviewInput(_In):
    code: Code
    user_id: uuid.UUID
    subtotal_amount: Subtotal
    currency: Currency


class ReserveCouponInput(_In):
    idempotency_key: IdempotencyKey
    code: Code
    user_id: uuid.UUID
    order_id: uuid.UUID
    subtotal_amount: Subtotal
    currency: Currency


class OrderCouponInput(_In):
    idempotency_key: IdempotencyKey
    order_id: uuid.UUID


class EvaluatePromotionsInput(_In):
    currency: Currency
    lines: list[CartLineIn] = Field(min_length=1, max_length=200)


class RecordPromotionsInput(_In):
    idempotency_key: IdempotencyKey
    order_id: uuid.UUID
    user_id: uuid.UUID
    applied: list[AppliedPromotion] = Field(max_length=50)


class PromotionsRecorded(BaseModel):
    recorded: int


class ReleaseExpiredInput(_In):
    limit: int = Field(default=500, ge=1, le=10_000)


class ReleaseExpiredResult(BaseModel):
    released: int


def _now() -> datetime:
    return datetime.now(UTC)


class DiscountActivities:
    """Adapts ``services.discount`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    @activity.defn(name="discount.preview")
    async def preview(self, inp: PreviewInput) -> CouponQuote:
        """What the code is worth for this subtotal now (takes no slot), or the refusal."""
        now = _now()
        return await read(
            self.sessions,
            lambda s: service.validate(s, inp.code, inp.user_id, inp.subtotal_amount, inp.currency, now),
        )

    @activity.defn(name="discount.reserve_coupon")
    async def reserve_coupon(self, inp: ReserveCouponInput) -> Reservation:
        """Take a slot of the coupon for the order (limits counted atomically). Compensation:
        ``discount.release_coupon``."""
        now = _now()
        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="discount.reserve_coupon",
            request=inp,
            result_type=Reservation,
            effect=lambda s: service.reserve(
                s, inp.code, inp.user_id, inp.order_id, inp.subtotal_amount, inp.currency, now
            ),
        )

    @activity.defn(name="discount.release_coupon")
    async def release_coupon(self, inp: OrderCouponInput) -> Released:
        """Free the order's reserved slot; no reservation at all is a no-op (``found`` false)."""
        now = _now()
        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="discount.release_coupon",
            request=inp,
            result_type=Released,
            effect=lambda s: service.release(s, inp.order_id, now),
        )

    @activity.defn(name="discount.commit_coupon")
    async def commit_coupon(self, inp: OrderCouponInput) -> Committed:
        now = _now()
        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="discount.commit_coupon",
            request=inp,
            result_type=Committed,
            effect=lambda s: service.commit(s, inp.order_id, now),
        )

    @activity.defn(name="discount.evaluate_promotions")
    async def evaluate_promotions(self, inp: EvaluatePromotionsInput) -> PromotionEvaluation:
        now = _now()
        return await read(
            self.sessions, lambda s: service.evaluate_promotions(s, inp.lines, inp.currency, now)
        )

    @activity.defn(name="discount.record_promotions")
    async def record_promotions(self, inp: RecordPromotionsInput) -> PromotionsRecorded:
        async def effect(s: AsyncSession) -> PromotionsRecorded:
            return PromotionsRecorded(
                recorded=await service.record_promotion_usage(s, inp.order_id, inp.user_id, inp.applied)
            )

        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="discount.record_promotions",
            request=inp,
            result_type=PromotionsRecorded,
            effect=effect,
        )

    @activity.defn(name="discount.release_expired")
    async def release_expired(self, inp: ReleaseExpiredInput) -> ReleaseExpiredResult:
        """Maintenance (a schedule): free reservations past their expiry. Naturally idempotent."""
        now = _now()
        with business_errors():
            async with self.sessions() as s, s.begin():
                return ReleaseExpiredResult(released=await service.release_expired(s, now, inp.limit))


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py discount`` registers (besides ``discount.ping``)."""
    acts = DiscountActivities(sessions)
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
