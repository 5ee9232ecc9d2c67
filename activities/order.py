"""Activities of the order service, served on task queue ``order`` by ``python worker.py order``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity

from core.activity_support import business_errors, idempotent_write, read
from core.db import SessionFactory
from core.partitions import MONTHS_AHEAD
from core.settings import Settings
from services.order import service
from services.order.models import OrderStatus, ledger
from services.order.schemas import (
    CreatedOrder,
    NewOrder,
    OrderView,
    PartitionsEnsured,
    ReturnLineIn,
    ReturnRecorded,
    StatusChange,
)

TASK_QUEUE = "order"

IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255)]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]
Actor = Annotated[str, Field(min_length=1, max_length=100)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateOrderInput(NewOrder):
    idempotency_key: IdempotencyKey


class FailOrderInput(_In):
    idempotency_key: IdempotencyKey
    order_id: uuid.UUID
    user_id: uuid.UUID
    reason: Reason
    actor: Actor = "system"


class CancelOrderInput(FailOrderInput):
    pass


class ConfirmOrderInput(_In):
    idempotency_key: IdempotencyKey
    order_id: uuid.UUID
    user_id: uuid.UUID
    payment_id: uuid.UUID
    actor: Actor = "system"


class SetOrderStatusInput(_In):
    """For shipped / delivered / returned / partially_returned / refunded (and the others the state
    machine allows); ``shipment_id`` is remembered when given."""

    idempotency_key: IdempotencyKey
    order_id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    reason: str | None = Field(default=None, max_length=2000)
    shipment_id: uuid.UUID | None = None
    actor: Actor = "system"


class RecordReturnInput(_In):
    idempotency_key: IdempotencyKey
    order_id: uuid.UUID
    user_id: uuid.UUID
    items: list[ReturnLineIn] = Field(min_length=1, max_length=200)
    reason: str | None = Field(default=None, max_length=2000)
    actor: Actor = "system"


class GetOrderInput(_In):
    order_id: uuid.UUID
    user_id: uuid.UUID | None = None


class EnsurePartitionsInput(_In):
    months_ahead: int = Field(default=MONTHS_AHEAD, ge=0, le=24)


class OrderActivities:
    """Adapts ``services.order`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    @activity.defn(name="order.create")
    async def create(self, inp: CreateOrderInput) -> CreatedOrder:
        new = NewOrder.model_validate(inp.model_dump(exclude={"idempotency_key"}))
        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="order.create",
            request=inp,
            result_type=CreatedOrder,
            effect=lambda s: service.create_order(s, new, actor=inp.workflow_id or "system"),
        )

    @activity.defn(name="order.fail")
    async def fail(self, inp: FailOrderInput) -> StatusChange:
        """Checkout compensation: the order becomes ``failed`` with the reason (absent order: no-op)."""
        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="order.fail",
            request=inp,
            result_type=StatusChange,
            effect=lambda s: service.fail(s, inp.order_id, inp.user_id, inp.reason, actor=inp.actor),
        )

    @activity.defn(name="order.cancel")
    async def cancel(self, inp: CancelOrderInput) -> StatusChange:
        """Shopper or support cancel before shipping."""
        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="order.cancel",
            request=inp,
            result_type=StatusChange,
            effect=lambda s: service.cancel(s, inp.order_id, inp.user_id, inp.reason, actor=inp.actor),
        )

    @activity.defn(name="order.confirm")
    async def confirm(self, inp: ConfirmOrderInput) -> StatusChange:
        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="order.confirm",
            request=inp,
            result_type=StatusChange,
            effect=lambda s: service.confirm(s, inp.order_id, inp.user_id, inp.payment_id, actor=inp.actor),
        )

    @activity.defn(name="order.set_status")
    async def set_status(self, inp: SetOrderStatusInput) -> StatusChange:
        values: dict[str, Any] = {"shipment_id": inp.shipment_id} if inp.shipment_id else {}
        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="order.set_status",
            request=inp,
            result_type=StatusChange,
            effect=lambda s: service.set_status(
                s, inp.order_id, inp.user_id, inp.status, reason=inp.reason, actor=inp.actor, values=values
            ),
        )

    @activity.defn(name="order.record_return")
    async def record_return(self, inp: RecordReturnInput) -> ReturnRecorded:
        """Returned units per item; the order becomes ``returned`` or ``partially_returned``."""
        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="order.record_return",
            request=inp,
            result_type=ReturnRecorded,
            effect=lambda s: service.record_return(
                s, inp.order_id, inp.user_id, inp.items, reason=inp.reason, actor=inp.actor
            ),
        )

    @activity.defn(name="order.get")
    async def get(self, inp: GetOrderInput) -> OrderView:
        return await read(self.sessions, lambda s: service.get_order(s, inp.order_id, inp.user_id))

    @activity.defn(name="order.ensure_partitions")
    async def ensure_partitions(self, inp: EnsurePartitionsInput) -> PartitionsEnsured:
        """Monthly partitions of ``order_status_history`` up to ``months_ahead`` (idempotent DDL)."""
        today = datetime.now(UTC).date()
        with business_errors():
            async with self.sessions() as s, s.begin():
                return await service.ensure_history_partitions(s, today, inp.months_ahead)


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py order`` registers (besides ``order.ping``)."""
    acts = OrderActivities(sessions)
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
