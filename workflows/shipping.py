"""``shipping``: one workflow per order (id ``shipping-{order_id}``), started by a confirmed checkout.

    read the order (address snapshot, items) -> create the shipment -> buy the label from the carrier
    -> follow the carrier's tracking events (signals relayed by the carrier webhook) to delivered

* first scan (the event that took the parcel out of the pre-pickup states): the order becomes
  SHIPPED, the checkout hears ``shipped`` (it closes), the payment saga is told to capture, the
  shopper gets ``order_shipped``;
* delivered: the order becomes DELIVERED and the shopper gets ``order_delivered``;
* stalls: no pickup within ``no_pickup_s`` of the label, no movement within ``no_movement_s`` of the
  last event: the saga is marked as needing attention (search attribute ``NeedsAttention``, current
  details, a warning in the worker log) and keeps waiting; the next event clears it;
* a carrier ``exception`` event is shown the same way until the parcel moves again;
* no label can be bought (carrier refuses or keeps failing): the shipment is cancelled and the
  checkout hears ``label_failed``, so it refunds, restocks and cancels the order;
* the checkout may ask to stop (shopper cancel before the first scan, signal ``cancel``): the label
  is voided and the checkout hears ``cancelled``; once the carrier has the parcel the void is refused
  and the checkout hears ``shipped``.

Shipment ids are derived from the order id (``outbound_shipment_id``), so the API finds the
shipment of an order without asking the workflow.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.order import GetOrderInput, OrderActivities, SetOrderStatusInput
    from activities.shipping import (
        BuyLabelInput,
        BuyLabelResult,
        CancelShipmentInput,
        CreateShipmentInput,
        ShippingActivities,
    )
    from core.temporal import CUSTOMER_ID, NEEDS_ATTENTION, ORDER_ID, ORDER_STATUS
    from workflows.messages import ShippingOptions
    from workflows.payment import PaymentCommand, PaymentUpdate, PaymentWorkflow
    from workflows.saga import (
        Resolution,
        Saga,
        SagaTimings,
        StepwiseSaga,
        failure_message,
        failure_type,
        send_email,
        wait_until,
    )

SHIPMENT_NAMESPACE = uuid.UUID("0f6f3c2e-5d7a-4b8e-9a51-7c2d4e8b1a93")

ShippingState = Literal[
    "started",
    "label_purchased",
    "shipped",
    "delivered",
    "label_failed",
    "cancelled",
    "returned_to_sender",
]
FINAL: tuple[ShippingState, ...] = ("delivered", "label_failed", "cancelled", "returned_to_sender")


def outbound_shipment_id(order_id: uuid.UUID) -> uuid.UUID:
    """The id of an order's outbound shipment (deterministic: the API and the return saga find it)."""
    return uuid.uuid5(SHIPMENT_NAMESPACE, f"outbound:{order_id}")


def return_shipment_id(return_id: uuid.UUID) -> uuid.UUID:
    """The id of a return's label shipment."""
    return uuid.uuid5(SHIPMENT_NAMESPACE, f"return:{return_id}")


def shipping_workflow_id(order_id: uuid.UUID) -> str:
    return f"shipping-{order_id}"


class ShippingInput(BaseModel):
    order_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    first_name: str = ""  # for the emails; else the recipient's first name from the order
    shipping_method_id: uuid.UUID
    weight_grams: int = Field(gt=0)
    webhook_url: str | None = None  # where the carrier posts tracking events
    reply_to: str | None = None  # the checkout workflow (shipment_update signals)
    payment_workflow_id: str | None = None  # told to capture at the first scan
    options: ShippingOptions = ShippingOptions()
    timings: SagaTimings = SagaTimings()


class TrackingSignal(BaseModel):
    """A verified, recorded carrier event, relayed by the API (duplicates are ignored by event id)."""

    event_id: str
    status: str
    occurred_at: datetime
    location: str | None = None
    description: str | None = None
    first_scan: bool = False  # as the shipping service recorded it
    delivered: bool = False


class ShippingCancel(BaseModel):
    """From the checkout: the shopper cancelled; answer with ``shipment_update`` to ``reply_to``."""

    reason: str = Field(default="cancelled", max_length=500)
    reply_to: str


class ShipmentNotice(BaseModel):
    """Sent as ``shipment_update`` to the checkout (the shape of ``workflows.checkout.ShipmentUpdate``)."""

    status: Literal["shipped", "label_failed", "cancelled"]
    shipment_id: uuid.UUID | None = None
    message: str = ""


class TrackingEntry(BaseModel):
    status: str
    occurred_at: datetime
    location: str | None
    description: str | None


class ShippingStatus(BaseModel):
    workflow_id: str
    order_id: uuid.UUID
    shipment_id: uuid.UUID
    status: ShippingState
    step: str
    carrier_status: str | None
    carrier_code: str | None
    tracking_number: str | None
    tracking_url: str | None
    shipped_at: datetime | None
    delivered_at: datetime | None
    payment_status: str | None
    needs_attention: str | None
    alerts: list[str]
    events: list[TrackingEntry]
    log: list[str]


class _LabelFailed(Exception):
    pass


@workflow.defn(name="shipping")
class ShippingWorkflow(StepwiseSaga):
    def __init__(self) -> None:
        self.inp: ShippingInput | None = None
        self.state: ShippingState = "started"
        self.step = "start"
        self.order_number = ""
        self.first_name = ""
        self.label: BuyLabelResult | None = None
        self.carrier_status: str | None = None
        self.shipped_at: datetime | None = None
        self.delivered_at: datetime | None = None
        self.inbox: list[TrackingSignal] = []
        self.seen: set[str] = set()
        self.events: list[TrackingEntry] = []
        self.cancel_request: ShippingCancel | None = None
        self.cancel_answered = False
        self.payment_status: str | None = None
        self.stall: str | None = None
        self.exception: str | None = None
        self.capture_problem: str | None = None
        self.alerts: list[str] = []
        self.saga = Saga(SagaTimings())

    # == the saga ===============================================================================
    @workflow.run
    async def run(self, inp: ShippingInput) -> ShippingStatus:
        self.inp = inp
        self.saga = Saga(inp.timings)
        workflow.upsert_search_attributes(
            [
                ORDER_ID.value_set(str(inp.order_id)),
                CUSTOMER_ID.value_set(str(inp.user_id)),
                ORDER_STATUS.value_set("started"),
                NEEDS_ATTENTION.value_set(False),
            ]
        )
        try:
            await self._prepare(inp)
        except _LabelFailed as exc:
            await self._label_failed(str(exc))
        if self.state not in FINAL:
            await self._follow(inp)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.query_status()

    async def _prepare(self, inp: ShippingInput) -> None:
        wid = workflow.info().workflow_id
        try:
            order = await self._call(
                "read the order",
                OrderActivities.get,
                GetOrderInput(order_id=inp.order_id, user_id=inp.user_id),
                queue="order",
            )
        except ActivityError as exc:
            raise _LabelFailed(f"the order could not be read: {failure_message(exc)}") from exc
        self.order_number = order.order_number
        address = order.shipping_address
        names = address.recipient_name.split() if address is not None else []
        self.first_name = inp.first_name or (names[0] if names else "")
        if await self._cancelled_before_label():
            return
        if address is None:
            raise _LabelFailed("the order has no shipping address")
        try:
            create = CreateShipmentInput.model_validate(
                {
                    "idempotency_key": f"{wid}:shipping.create_shipment",
                    "shipment_id": self.shipment_id(),
                    "order_id": inp.order_id,
                    "user_id": inp.user_id,
                    "direction": "outbound",
                    "method_id": inp.shipping_method_id,
                    "address": {
                        "country": address.country_code,
                        "postal_code": address.postal_code,
                        "name": address.recipient_name,
                        "line1": address.line1,
                        "line2": address.line2,
                        "city": address.city,
                        "region": address.region,
                        "phone": address.phone,
                    },
                    "weight_grams": inp.weight_grams,
                    "items": [
                        {
                            "variant_id": item.variant_id or item.product_id,
                            "quantity": item.quantity,
                            "order_item_id": item.id,
                            "name": item.name[:300],
                        }
                        for item in order.items
                    ],
                }
            )
        except ValidationError as exc:  # e.g. heavier than a carrier takes in one parcel
            raise _LabelFailed(f"the shipment cannot be made: {exc.errors()[0]['msg']}") from exc
        try:
            await self._call("create shipment", ShippingActivities.create_shipment, create, queue="shipping")
        except ActivityError as exc:  # a business refusal (the method no longer serves the address)
            raise _LabelFailed(f"the shipment could not be created: {failure_message(exc)}") from exc
        if await self._cancelled_before_label():
            return
        try:
            self.label = await self._call(
                "buy label",
                ShippingActivities.buy_label,
                BuyLabelInput(
                    idempotency_key=f"{wid}:shipping.buy_label",
                    shipment_id=self.shipment_id(),
                    webhook_url=inp.webhook_url,
                ),
                queue="shipping",
                retry=RetryPolicy(
                    initial_interval=timedelta(milliseconds=200),
                    maximum_interval=timedelta(seconds=60),
                    maximum_attempts=inp.options.label_attempts,
                ),
            )
        except ActivityError as exc:
            raise _LabelFailed(f"no shipping label could be bought: {failure_message(exc)}") from exc
        self._log(f"label {self.label.tracking_number} bought from {self.label.carrier_code}")
        self._set_state("label_purchased")
        if self.cancel_request is not None:
            await self._handle_cancel()

    async def _cancelled_before_label(self) -> bool:
        if self.cancel_request is None:
            return False
        await self._handle_cancel()
        return True

    async def _follow(self, inp: ShippingInput) -> None:
        """Tracking events (signals) until delivered; stall timers between them."""
        while self.state not in FINAL:
            picked_up = self.shipped_at is not None
            within = inp.options.no_movement_s if picked_up else inp.options.no_pickup_s
            self._set_step("awaiting carrier scan" if not picked_up else "in transit")
            moved = await wait_until(
                self._has_work,
                timedelta(seconds=within),
                "no movement" if picked_up else "no pickup",
            )
            if not moved:
                what = (
                    f"no carrier movement within {within:g} s of the last event"
                    if picked_up
                    else f"the carrier has not picked the parcel up within {within:g} s of the label"
                )
                await self._raise_stall(what)
                await workflow.wait_condition(self._has_work)
            if self.cancel_request is not None and not self.cancel_answered:
                await self._handle_cancel()
                continue
            if self.inbox:
                await self._handle(self.inbox.pop(0))

    def _has_work(self) -> bool:
        return bool(self.inbox) or (self.cancel_request is not None and not self.cancel_answered)

    async def _handle(self, event: TrackingSignal) -> None:
        self.events.append(
            TrackingEntry(
                status=event.status,
                occurred_at=event.occurred_at,
                location=event.location,
                description=event.description,
            )
        )
        self.carrier_status = event.status
        self._log(f"carrier: {event.status}")
        if self.stall is not None:
            self.stall = None
            self._attention_changed()
        if event.status == "exception":
            self.exception = event.description or "the carrier reported a delivery exception"
            self.alerts.append(f"{workflow.now().isoformat()} carrier exception: {self.exception}")
            workflow.logger.warning(
                "support: carrier exception on order %s: %s", self._order_id(), self.exception
            )
            self._attention_changed()
            await self._alert(f"carrier exception: {self.exception}", "Ask the carrier about the parcel.")
            return
        if self.exception is not None:
            self.exception = None
            self._attention_changed()
        if event.status == "returned_to_sender":
            self.exception = "the carrier returned the parcel to the sender"
            self.alerts.append(f"{workflow.now().isoformat()} returned to sender")
            workflow.logger.warning("support: parcel of order %s returned to sender", self._order_id())
            self._set_state("returned_to_sender")
            self._attention_changed()
            await self._alert(self.exception, "Agree with the shopper on a new shipment or a refund.")
            return
        if event.first_scan and self.shipped_at is None:
            await self._first_scan(event)
        if event.delivered and self.delivered_at is None:
            await self._delivered(event)

    async def _first_scan(self, event: TrackingSignal) -> None:
        inp = self._input()
        wid = workflow.info().workflow_id
        self.shipped_at = event.occurred_at
        await self._must(
            "mark order shipped",
            OrderActivities.set_status,
            SetOrderStatusInput.model_validate(
                {
                    "idempotency_key": f"{wid}:order.shipped",
                    "order_id": inp.order_id,
                    "user_id": inp.user_id,
                    "status": "shipped",
                    "reason": "first carrier scan",
                    "shipment_id": self.shipment_id(),
                    "actor": "shipping",
                }
            ),
            "order",
        )
        self._set_state("shipped")
        await self._tell_checkout(ShipmentNotice(status="shipped", shipment_id=self.shipment_id()))
        if inp.payment_workflow_id:
            try:
                await workflow.get_external_workflow_handle(inp.payment_workflow_id).signal(
                    PaymentWorkflow.command,
                    PaymentCommand(kind="capture", request_id="first-scan", reply_to=wid),
                )
                self._log("capture requested")
            except Exception as exc:  # the payment saga is gone: money not collected, support must see it
                self.capture_problem = f"the payment saga did not take the capture command: {exc}"
                self.alerts.append(f"{workflow.now().isoformat()} {self.capture_problem}")
                workflow.logger.warning("support: order %s: %s", self._order_id(), self.capture_problem)
                self._attention_changed()
                await self._alert(self.capture_problem, "Capture the payment at the provider by hand.")
        label = self.label
        await self._notify(
            "order_shipped",
            {
                "carrier_name": label.carrier_code if label else "",
                "tracking_number": label.tracking_number if label else "",
                "tracking_url": label.tracking_url if label else None,
            },
        )

    async def _delivered(self, event: TrackingSignal) -> None:
        inp = self._input()
        wid = workflow.info().workflow_id
        self.delivered_at = event.occurred_at
        await self._must(
            "mark order delivered",
            OrderActivities.set_status,
            SetOrderStatusInput.model_validate(
                {
                    "idempotency_key": f"{wid}:order.delivered",
                    "order_id": inp.order_id,
                    "user_id": inp.user_id,
                    "status": "delivered",
                    "reason": "delivered by the carrier",
                    "actor": "shipping",
                }
            ),
            "order",
        )
        self._set_state("delivered")
        await self._notify("order_delivered", {"return_window_days": inp.options.return_window_days})

    # == failure and cancellation ================================================================
    async def _label_failed(self, reason: str) -> None:
        self._log(reason)
        workflow.logger.warning("order %s: %s", self._order_id(), reason)
        await self._void_shipment()
        self._set_state("label_failed", reason)
        await self._tell_checkout(
            ShipmentNotice(status="label_failed", shipment_id=self.shipment_id(), message=reason)
        )

    async def _handle_cancel(self) -> None:
        request = self.cancel_request
        assert request is not None
        self.cancel_answered = True
        if self.shipped_at is not None:
            await self._tell(
                request.reply_to, ShipmentNotice(status="shipped", shipment_id=self.shipment_id())
            )
            return
        if not await self._void_shipment():
            self._log("cancel refused: the carrier already has the parcel")
            await self._tell(
                request.reply_to,
                ShipmentNotice(
                    status="shipped",
                    shipment_id=self.shipment_id(),
                    message="the carrier already has the parcel",
                ),
            )
            return
        self._set_state("cancelled", request.reason)
        await self._tell(request.reply_to, ShipmentNotice(status="cancelled", shipment_id=self.shipment_id()))

    async def _void_shipment(self) -> bool:
        """Cancel the shipment and void its label; False when refused (the parcel is with the carrier).
        A shipment that was never created counts as cancelled."""
        wid = workflow.info().workflow_id
        try:
            await self._call(
                "cancel shipment",
                ShippingActivities.cancel_shipment,
                CancelShipmentInput(
                    idempotency_key=f"{wid}:shipping.cancel_shipment", shipment_id=self.shipment_id()
                ),
                queue="shipping",
            )
        except ActivityError as exc:
            if failure_type(exc) == "ShipmentNotFound":
                return True
            self._log(f"cancel shipment refused: {failure_message(exc)}")
            return False
        return True

    # == activity plumbing =======================================================================
    async def _notify(self, template: str, extra: dict[str, Any]) -> None:
        inp = self._input()
        context: dict[str, Any] = {
            "first_name": self.first_name or "there",
            "order_number": self.order_number,
            "order_id": str(inp.order_id),
            **extra,
        }
        await send_email(self.saga, template, user_id=inp.user_id, recipient=inp.email, context=context)

    async def _tell_checkout(self, notice: ShipmentNotice) -> None:
        inp = self._input()
        if inp.reply_to:
            await self._tell(inp.reply_to, notice)

    async def _tell(self, workflow_id: str, notice: ShipmentNotice) -> None:
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal("shipment_update", notice)
        except Exception as exc:  # the checkout has ended; the order row is what counts
            workflow.logger.info("could not tell %s about %s: %s", workflow_id, notice.status, exc)

    # == state shown to shoppers, support and the Web UI ==========================================
    def _input(self) -> ShippingInput:
        assert self.inp is not None
        return self.inp

    def _order_id(self) -> str:
        return str(self.inp.order_id) if self.inp else "?"

    def shipment_id(self) -> uuid.UUID:
        return outbound_shipment_id(self._input().order_id)

    def _set_state(self, state: ShippingState, reason: str | None = None) -> None:
        self.state = state
        workflow.upsert_search_attributes([ORDER_STATUS.value_set(state)])
        if reason:
            self._log(f"{state}: {reason}")
        self._details()

    async def _raise_stall(self, what: str) -> None:
        self.stall = what
        self.alerts.append(f"{workflow.now().isoformat()} {what}")
        # Support watches NeedsAttention (Web UI, /v1/support) and gets the mail.
        workflow.logger.warning("support: shipment of order %s stalled: %s", self._order_id(), what)
        self._attention_changed()
        await self._alert(
            f"shipment stalled: {what}",
            "Ask the carrier about the parcel; the flag clears itself with the next carrier event.",
        )

    async def _alert(self, what: str, todo: str) -> None:
        order = self._order_id()
        await self.saga.alert(
            f"order {order}: {what}",
            self.step,
            todo=f"{todo} The order with its shipment: GET /v1/support/orders/{order}.",
        )

    def _attention(self) -> str | None:
        parts = [p for p in (self.stall, self.exception, self.capture_problem, self.saga.parked) if p]
        return "; ".join(parts) or None

    def _attention_changed(self) -> None:
        workflow.upsert_search_attributes([NEEDS_ATTENTION.value_set(self._attention() is not None)])
        self._details()

    def _details(self) -> None:
        label = self.label
        lines = [f"**Shipment of order {self.order_number or self._order_id()}**: {self.state}"]
        if label is not None:
            lines.append(f"\nCarrier `{label.carrier_code}`, tracking `{label.tracking_number}`")
        if self.carrier_status:
            lines.append(f"\nLast carrier event: {self.carrier_status}")
        attention = self._attention()
        if attention:
            lines.append(f"\n## Needs attention\n{attention}")
        if self.saga.log:
            lines.append("\nSteps: " + ", ".join(self.saga.log[-12:]))
        workflow.set_current_details("\n".join(lines))

    @workflow.query
    def query_status(self) -> ShippingStatus:
        inp = self.inp
        label = self.label
        return ShippingStatus(
            workflow_id=workflow.info().workflow_id,
            order_id=inp.order_id if inp else uuid.UUID(int=0),
            shipment_id=outbound_shipment_id(inp.order_id) if inp else uuid.UUID(int=0),
            status=self.state,
            step=self.step,
            carrier_status=self.carrier_status,
            carrier_code=label.carrier_code if label else None,
            tracking_number=label.tracking_number if label else None,
            tracking_url=label.tracking_url if label else None,
            shipped_at=self.shipped_at,
            delivered_at=self.delivered_at,
            payment_status=self.payment_status,
            needs_attention=self._attention(),
            alerts=self.alerts,
            events=self.events,
            log=self.saga.log,
        )

    # == messages ================================================================================
    @workflow.signal
    def tracking_event(self, event: TrackingSignal) -> None:
        if event.event_id in self.seen:
            return
        self.seen.add(event.event_id)
        self.inbox.append(event)

    @workflow.signal
    def cancel(self, request: ShippingCancel) -> None:
        if self.cancel_request is None:
            self.cancel_request = request

    @workflow.signal
    def payment_update(self, update: PaymentUpdate) -> None:
        self.payment_status = update.status
        self._log(f"payment: {update.status}")

    @workflow.update
    def resolve(self, decision: Resolution) -> str:
        self.saga.resolve(decision)
        return "resolved"

    @resolve.validator
    def _validate_resolve(self, decision: Resolution) -> None:
        if self.saga.parked is None:
            raise ApplicationError("nothing is waiting for a decision", type="NothingToResolve")
