"""Activities of the return service, served on task queue ``return`` by ``python worker.py return``.

Every writing activity records its idempotency key with its effect (``core.activity_support``); the
caller passes the order snapshot (``order.get``'s result fits ``OrderSnapshot``)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from core.activity_support import business_errors, idempotent_write, read
from core.db import SessionFactory
from core.settings import Settings
from services.returns import service
from services.returns.models import ledger
from services.returns.schemas import (
    InspectionLineIn,
    OrderSnapshot,
    RefundBreakdown,
    RefundStatusName,
    RestockLine,
    ReturnLineIn,
    ReturnView,
)

TASK_QUEUE = "return"
DEFAULT_WINDOW_DAYS = 30

R = TypeVar("R", bound=BaseModel)
IdempotencyKey = Field(min_length=1, max_length=255, description="<workflow id>:<step>")
Actor = Field(
    default="system", min_length=1, max_length=255, description="who acts: system, user:<id>, support:<id>"
)
Note = Field(default=None, max_length=4000)


# --------------------------------------------------------------------------------------------
# Contract


class CreateReturnInput(BaseModel):
    idempotency_key: str = IdempotencyKey
    return_id: uuid.UUID
    order: OrderSnapshot
    items: list[ReturnLineIn] = Field(min_length=1, max_length=200)
    user_id: uuid.UUID
    window_days: int = Field(default=DEFAULT_WINDOW_DAYS, ge=0, le=3650)
    auto_approve_under_amount: int | None = Field(default=None, ge=0, description="None: never auto-approve")
    requested_at: datetime | None = Field(default=None, description="when the shopper asked (default: now)")
    workflow_id: str | None = Field(default=None, max_length=255)

    @model_validator(mode="after")
    def _unique_lines(self) -> CreateReturnInput:
        ids = [line.order_item_id for line in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("each order item may appear once in a return")
        return self


class CreateReturnResult(BaseModel):
    return_id: uuid.UUID
    rma_number: str
    status: str
    auto_approved: bool
    requested_amount: int
    currency: str


class StatusResult(BaseModel):
    return_id: uuid.UUID
    status: str
    previous_status: str
    changed: bool


class DecideInput(BaseModel):
    idempotency_key: str = IdempotencyKey
    return_id: uuid.UUID
    approve: bool
    actor: str = Actor
    note: str | None = Note


class AuthorizeInput(BaseModel):
    idempotency_key: str = IdempotencyKey
    return_id: uuid.UUID
    tracking_number: str | None = Field(default=None, min_length=1, max_length=100)
    label_url: str | None = Field(default=None, max_length=1000)
    expires_at: datetime


class AuthorizeResult(StatusResult):
    rma_number: str
    expires_at: datetime


class ParcelReceivedInput(BaseModel):
    idempotency_key: str = IdempotencyKey
    return_id: uuid.UUID
    actor: str = Actor


class InspectionInput(BaseModel):
    idempotency_key: str = IdempotencyKey
    return_id: uuid.UUID
    items: list[InspectionLineIn] = Field(min_length=1, max_length=200)
    actor: str = Actor


class InspectionResult(BaseModel):
    return_id: uuid.UUID
    refund_amount: int
    currency: str
    restock_lines: list[RestockLine]
    payment_id: uuid.UUID | None = Field(description="the order's payment (from the snapshot)")
    breakdown: RefundBreakdown


class RecordRefundInput(BaseModel):
    idempotency_key: str = IdempotencyKey
    return_id: uuid.UUID
    payment_id: uuid.UUID
    amount: int = Field(gt=0)
    provider_refund_id: str | None = Field(default=None, min_length=1, max_length=255)
    status: RefundStatusName


class RecordRefundResult(BaseModel):
    return_id: uuid.UUID
    refund_id: uuid.UUID
    refund_status: str
    return_status: str
    refunded_total: int


class SetStatusInput(BaseModel):
    idempotency_key: str = IdempotencyKey
    return_id: uuid.UUID
    status: Literal["closed", "expired", "cancelled"]
    actor: str = Actor
    note: str | None = Note


class GetReturnInput(BaseModel):
    return_id: uuid.UUID


class GetReturnResult(ReturnView):
    pass


class RecordReturnTrackingInput(BaseModel):
    carrier_event_id: str = Field(min_length=1, max_length=200)
    tracking_number: str = Field(min_length=1, max_length=100)
    status: str = Field(min_length=1, max_length=30)
    occurred_at: datetime
    location: str | None = Field(default=None, max_length=300)
    description: str | None = Field(default=None, max_length=2000)


class RecordReturnTrackingResult(BaseModel):
    return_id: uuid.UUID
    duplicate: bool
    delivered: bool


# --------------------------------------------------------------------------------------------
# Activities


class ReturnActivities:
    """Adapts ``services.returns`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    async def _write(
        self,
        operation: str,
        inp: Any,
        result_type: type[R],
        effect: Callable[[AsyncSession], Awaitable[BaseModel]],
    ) -> R:
        async def run(s: AsyncSession) -> R:
            return result_type.model_validate((await effect(s)).model_dump())

        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation=operation,
            request=inp,
            result_type=result_type,
            effect=run,
        )

    @activity.defn(name="return.create_request")
    async def create_request(self, inp: CreateReturnInput) -> CreateReturnResult:
        now = inp.requested_at or datetime.now(UTC)
        return await self._write(
            "return.create_request",
            inp,
            CreateReturnResult,
            lambda s: service.create_request(
                s,
                return_id=inp.return_id,
                order=inp.order,
                lines=inp.items,
                user_id=inp.user_id,
                window_days=inp.window_days,
                auto_approve_under_amount=inp.auto_approve_under_amount,
                now=now,
                workflow_id=inp.workflow_id,
            ),
        )

    @activity.defn(name="return.decide")
    async def decide(self, inp: DecideInput) -> StatusResult:
        return await self._write(
            "return.decide",
            inp,
            StatusResult,
            lambda s: service.decide(s, inp.return_id, approve=inp.approve, actor=inp.actor, note=inp.note),
        )

    @activity.defn(name="return.authorize")
    async def authorize(self, inp: AuthorizeInput) -> AuthorizeResult:
        async def effect(s: AsyncSession) -> AuthorizeResult:
            change = await service.authorize(
                s,
                inp.return_id,
                tracking_number=inp.tracking_number,
                label_url=inp.label_url,
                expires_at=inp.expires_at,
            )
            view = await service.get(s, inp.return_id)
            return AuthorizeResult(
                **change.model_dump(), rma_number=view.rma_number, expires_at=inp.expires_at
            )

        return await self._write("return.authorize", inp, AuthorizeResult, effect)

    @activity.defn(name="return.record_parcel_received")
    async def record_parcel_received(self, inp: ParcelReceivedInput) -> StatusResult:
        return await self._write(
            "return.record_parcel_received",
            inp,
            StatusResult,
            lambda s: service.record_parcel_received(s, inp.return_id, actor=inp.actor),
        )

    @activity.defn(name="return.record_inspection")
    async def record_inspection(self, inp: InspectionInput) -> InspectionResult:
        return await self._write(
            "return.record_inspection",
            inp,
            InspectionResult,
            lambda s: service.record_inspection(s, inp.return_id, lines=inp.items, actor=inp.actor),
        )

    @activity.defn(name="return.record_refund")
    async def record_refund(self, inp: RecordRefundInput) -> RecordRefundResult:
        return await self._write(
            "return.record_refund",
            inp,
            RecordRefundResult,
            lambda s: service.record_refund(
                s,
                inp.return_id,
                payment_id=inp.payment_id,
                amount=inp.amount,
                provider_refund_id=inp.provider_refund_id,
                status=inp.status,
            ),
        )

    @activity.defn(name="return.set_status")
    async def set_status(self, inp: SetStatusInput) -> StatusResult:
        return await self._write(
            "return.set_status",
            inp,
            StatusResult,
            lambda s: service.set_status(s, inp.return_id, status=inp.status, actor=inp.actor, note=inp.note),
        )

    @activity.defn(name="return.record_tracking_event")
    async def record_tracking_event(self, inp: RecordReturnTrackingInput) -> RecordReturnTrackingResult:
        """Idempotent by the carrier's event id (a redelivered webhook is ``duplicate``)."""

        with business_errors():
            async with self.sessions() as s, s.begin():
                recorded = await service.record_tracking_event(
                    s,
                    carrier_event_id=inp.carrier_event_id,
                    tracking_number=inp.tracking_number,
                    status=inp.status,
                    occurred_at=inp.occurred_at,
                    location=inp.location,
                    description=inp.description,
                )
        return RecordReturnTrackingResult.model_validate(recorded.model_dump())

    @activity.defn(name="return.get")
    async def get(self, inp: GetReturnInput) -> GetReturnResult:
        view = await read(self.sessions, lambda s: service.get(s, inp.return_id))
        return GetReturnResult.model_validate(view.model_dump())


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py return`` registers (besides ``return.ping``)."""
    acts = ReturnActivities(sessions)
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
