"""Activities of the shipping service, served on task queue ``shipping`` by ``python worker.py shipping``.

Label purchase and cancellation talk to the carrier: the carrier call comes first (with the
activity's idempotency key, so a retried purchase returns the first label), then the database
write and the ledger row in one transaction. A retry after that commit is answered from the ledger
without calling the carrier; a retry before it replays the carrier call and gets the same label.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.activity_support import business_errors, idempotent_write, read
from core.db import SessionFactory
from core.settings import Settings
from services.shipping import repository as repo
from services.shipping import service
from services.shipping.carrier import (
    CarrierClient,
    CarrierRequestError,
    CarrierSandboxClient,
    CarrierUnavailable,
    ServiceLevel,
)
from services.shipping.models import Carrier, ledger
from services.shipping.schemas import (
    CarrierEventStatus,
    DirectionName,
    Quote,
    QuoteRequest,
    ShipmentItem,
    ShipmentView,
    ShippingAddress,
    TrackingOutcome,
)

TASK_QUEUE = "shipping"

IdempotencyKey = Field(min_length=1, max_length=255, description="<workflow id>:<step>")


# --------------------------------------------------------------------------------------------
# Contract


class QuoteInput(QuoteRequest):
    """``shipping.quote``: address{country, postal_code}, shipping_method_id, weight_grams, subtotal_amount, currency."""


class QuoteResult(Quote):
    """amount, currency, method_code, carrier_code, estimated_days (+ method_id, method_name,
    service_level, min/max_delivery_days, free_shipping)."""


class CreateShipmentInput(BaseModel):
    idempotency_key: str = IdempotencyKey
    shipment_id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID
    direction: DirectionName = "outbound"
    method_id: uuid.UUID
    address: ShippingAddress = Field(description="the shopper's address (origin of a return parcel)")
    weight_grams: int = Field(gt=0, le=70_000)
    items: list[ShipmentItem] = Field(default_factory=list, max_length=500)


class CreateShipmentResult(BaseModel):
    shipment_id: uuid.UUID
    status: str


class BuyLabelInput(BaseModel):
    idempotency_key: str = IdempotencyKey
    shipment_id: uuid.UUID
    webhook_url: str | None = Field(
        default=None, max_length=2000, description="where the carrier posts tracking events"
    )


class BuyLabelResult(BaseModel):
    shipment_id: uuid.UUID
    tracking_number: str
    label_id: str
    label_url: str
    cost_amount: int
    currency: str
    carrier_code: str
    tracking_url: str | None


class CancelShipmentInput(BaseModel):
    idempotency_key: str = IdempotencyKey
    shipment_id: uuid.UUID


class CancelShipmentResult(BaseModel):
    shipment_id: uuid.UUID
    status: str
    label_voided: bool


class RecordTrackingEventInput(BaseModel):
    carrier_event_id: str = Field(min_length=1, max_length=200)
    tracking_number: str = Field(min_length=1, max_length=100)
    status: CarrierEventStatus
    occurred_at: datetime
    location: str | None = Field(default=None, max_length=300)
    description: str | None = Field(default=None, max_length=2000)


class RecordTrackingEventResult(TrackingOutcome):
    """shipment_id, order_id, user_id, direction, duplicate, first_scan, delivered, status."""


class GetShipmentInput(BaseModel):
    shipment_id: uuid.UUID


class GetShipmentResult(ShipmentView):
    pass


@contextmanager
def carrier_errors() -> Iterator[None]:
    """Carrier trouble as Temporal errors: unavailable is retried, a rejected request is not."""
    try:
        yield
    except CarrierUnavailable as exc:
        raise ApplicationError(str(exc), type="CarrierUnavailable", non_retryable=False) from exc
    except CarrierRequestError as exc:
        raise ApplicationError(str(exc), exc.problem, type="CarrierRequestError", non_retryable=True) from exc


def _tracking_url(carrier: Carrier, tracking_number: str) -> str | None:
    template = carrier.tracking_url_template
    return template.replace("{tracking_number}", tracking_number) if template else None


# --------------------------------------------------------------------------------------------
# Activities


class ShippingActivities:
    """Adapts ``services.shipping`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(
        self, sessions: SessionFactory, carrier: CarrierClient, *, default_webhook_url: str | None = None
    ) -> None:
        self.sessions = sessions
        self.carrier = carrier
        self.default_webhook_url = default_webhook_url

    @activity.defn(name="shipping.quote")
    async def quote(self, inp: QuoteInput) -> QuoteResult:
        result = await read(self.sessions, lambda s: service.quote(s, inp))
        return QuoteResult.model_validate(result.model_dump())

    @activity.defn(name="shipping.create_shipment")
    async def create_shipment(self, inp: CreateShipmentInput) -> CreateShipmentResult:
        async def effect(s: AsyncSession) -> CreateShipmentResult:
            shipment = await service.create_shipment(
                s,
                shipment_id=inp.shipment_id,
                order_id=inp.order_id,
                user_id=inp.user_id,
                direction=inp.direction,
                method_id=inp.method_id,
                address=inp.address,
                weight_grams=inp.weight_grams,
                items=inp.items,
            )
            return CreateShipmentResult(shipment_id=shipment.id, status=shipment.status)

        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="shipping.create_shipment",
            request=inp,
            result_type=CreateShipmentResult,
            effect=effect,
        )

    @activity.defn(name="shipping.buy_label")
    async def buy_label(self, inp: BuyLabelInput) -> BuyLabelResult:
        operation = "shipping.buy_label"
        with business_errors():
            async with self.sessions() as s, s.begin():
                done = await repo.peek_ledger(
                    s, key=inp.idempotency_key, operation=operation, request=inp, result_type=BuyLabelResult
                )
                if done is not None:
                    return done
                plan = await service.label_plan(s, inp.shipment_id)
            with carrier_errors():
                label = await self.carrier.buy_label(
                    reference=plan.reference,
                    service_level=_service_level(plan.service_level),
                    destination=plan.destination,
                    origin=plan.origin,
                    weight_grams=plan.weight_grams,
                    idempotency_key=inp.idempotency_key,
                    webhook_url=inp.webhook_url or self.default_webhook_url,
                    direction="return" if plan.direction == "return" else "outbound",
                )

        async def effect(s: AsyncSession) -> BuyLabelResult:
            shipment = await service.attach_label(s, inp.shipment_id, label)
            found = await repo.method_and_carrier(s, shipment.method_id)
            assert found is not None
            carrier = found[1]
            return BuyLabelResult(
                shipment_id=shipment.id,
                tracking_number=label.tracking_number,
                label_id=label.label_id,
                label_url=label.label_url,
                cost_amount=label.amount,
                currency=label.currency,
                carrier_code=carrier.code,
                tracking_url=_tracking_url(carrier, label.tracking_number),
            )

        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation=operation,
            request=inp,
            result_type=BuyLabelResult,
            effect=effect,
        )

    @activity.defn(name="shipping.cancel_shipment")
    async def cancel_shipment(self, inp: CancelShipmentInput) -> CancelShipmentResult:
        operation = "shipping.cancel_shipment"
        voided = False
        with business_errors():
            async with self.sessions() as s, s.begin():
                done = await repo.peek_ledger(
                    s,
                    key=inp.idempotency_key,
                    operation=operation,
                    request=inp,
                    result_type=CancelShipmentResult,
                )
                if done is not None:
                    return done
                shipment = await service.cancel_plan(s, inp.shipment_id)
            if shipment.status == "label_purchased" and shipment.label_id:
                with carrier_errors():
                    await self.carrier.void_label(shipment.label_id, idempotency_key=inp.idempotency_key)
                voided = True

        async def effect(s: AsyncSession) -> CancelShipmentResult:
            cancelled = await service.mark_cancelled(s, inp.shipment_id)
            return CancelShipmentResult(
                shipment_id=cancelled.id, status=cancelled.status, label_voided=voided
            )

        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation=operation,
            request=inp,
            result_type=CancelShipmentResult,
            effect=effect,
        )

    @activity.defn(name="shipping.record_tracking_event")
    async def record_tracking_event(self, inp: RecordTrackingEventInput) -> RecordTrackingEventResult:
        """Idempotent by the carrier's event id (a redelivered webhook is ``duplicate``)."""
        with business_errors():
            async with self.sessions() as s, s.begin():
                outcome = await service.record_tracking_event(
                    s,
                    carrier_event_id=inp.carrier_event_id,
                    tracking_number=inp.tracking_number,
                    status=inp.status,
                    occurred_at=inp.occurred_at,
                    location=inp.location,
                    description=inp.description,
                )
        return RecordTrackingEventResult.model_validate(outcome.model_dump())

    @activity.defn(name="shipping.get_shipment")
    async def get_shipment(self, inp: GetShipmentInput) -> GetShipmentResult:
        view = await read(self.sessions, lambda s: service.get_shipment(s, inp.shipment_id))
        return GetShipmentResult.model_validate(view.model_dump())


def _service_level(value: str) -> ServiceLevel:
    if value == "express":
        return "express"
    if value == "overnight":
        return "overnight"
    return "standard"


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py shipping`` registers (besides ``shipping.ping``)."""
    acts = ShippingActivities(
        sessions,
        CarrierSandboxClient(settings.carrier_url),
        default_webhook_url=f"http://{settings.api_host}:{settings.api_port}/v1/webhooks/carriers",
    )
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
