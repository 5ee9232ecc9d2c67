"""``return``: one workflow per return request (id ``return-{return_id}``), started by the API.

    read the order -> request (eligibility: delivered, inside the window, quantities returnable)
    -> approval: automatic under an amount, else support's ``decide`` update (escalates on timeout)
    -> RMA with a prepaid return label -> wait for the parcel until the RMA expires (timer; carrier
    events of the return label arrive as ``tracking_event`` signals) -> inspection (support's
    ``inspect`` update: accepted quantities and condition) -> refund through the payment saga
    (``command`` signal, ``payment_update`` reply) -> restock the accepted items -> order status
    RETURNED / PARTIALLY_RETURNED -> notify.

The refund and the restock happen exactly once whatever crashes: the payment saga deduplicates the
command by request id and its activity is idempotent by key (the PSP too); the restock, the refund
record and the order update are idempotent by ``<workflow id>:<step>``.

The API starts the workflow with update-with-start on ``submitted``, which answers once the request
is recorded (or refused: the update fails with the service's error type, e.g. ``OrderNotDelivered``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.order import GetOrderInput, OrderActivities, RecordReturnInput
    from activities.product import ProductActivities, RestockInput
    from activities.returns import (
        AuthorizeInput,
        CreateReturnInput,
        CreateReturnResult,
        DecideInput,
        InspectionInput,
        InspectionLineIn,
        InspectionResult,
        OrderSnapshot,
        ParcelReceivedInput,
        RecordRefundInput,
        ReturnActivities,
        ReturnLineIn,
        SetStatusInput,
    )
    from activities.shipping import (
        BuyLabelInput,
        CancelShipmentInput,
        CreateShipmentInput,
        GetShipmentInput,
        ShippingActivities,
    )
    from core.temporal import CUSTOMER_ID, NEEDS_ATTENTION, ORDER_ID, ORDER_STATUS, RETURN_ID
    from workflows.payment import PaymentCommand, PaymentUpdate, PaymentWorkflow
    from workflows.saga import (
        Resolution,
        Saga,
        SagaTimings,
        StepwiseSaga,
        failure_message,
        failure_type,
        send_email,
        step_retry,
        wait_until,
    )
    from workflows.shipping import TrackingSignal, outbound_shipment_id, return_shipment_id

ReturnState = Literal[
    "started",
    "refused",  # not eligible: nothing was recorded
    "awaiting_decision",
    "rejected",
    "approved",
    "awaiting_parcel",
    "in_transit",
    "received",
    "inspected",
    "refunding",
    "refunded",
    "closed",
    "expired",
]
FINAL: tuple[ReturnState, ...] = ("refused", "rejected", "refunded", "closed", "expired")
SCANNED = ("picked_up", "in_transit", "out_for_delivery", "delivered")


def return_workflow_id(return_id: uuid.UUID) -> str:
    return f"return-{return_id}"


class ReturnOptions(BaseModel):
    """Rules and durations; settings in production, seconds in tests."""

    window_days: int = Field(default=30, ge=0)
    auto_approve_under_amount: int | None = Field(default=None, ge=0)  # None: support decides all
    decision_timeout_s: float = Field(default=2 * 24 * 3600, gt=0)  # then the return is escalated
    rma_ttl_s: float = Field(default=14 * 24 * 3600, gt=0)  # the parcel must be handed over before
    label_attempts: int = Field(default=20, ge=1)


class ReturnInput(BaseModel):
    return_id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    first_name: str = ""
    items: list[ReturnLineIn] = Field(min_length=1, max_length=200)
    webhook_url: str | None = None  # where the carrier posts the return label's events
    options: ReturnOptions = ReturnOptions()
    timings: SagaTimings = SagaTimings()


class ReturnSubmitted(BaseModel):
    return_id: uuid.UUID
    rma_number: str
    status: str
    auto_approved: bool
    requested_amount: int
    currency: str


class Decision(BaseModel):
    approve: bool
    note: str | None = Field(default=None, max_length=2000)
    actor: str = Field(default="support", max_length=255)


class Inspection(BaseModel):
    items: list[InspectionLineIn] = Field(min_length=1, max_length=200)
    actor: str = Field(default="support", max_length=255)


class UpdateOutcome(BaseModel):
    return_id: uuid.UUID
    status: ReturnState
    message: str
    refund_amount: int | None = None


class ReturnSagaStatus(BaseModel):
    workflow_id: str
    return_id: uuid.UUID
    order_id: uuid.UUID
    status: ReturnState
    step: str
    rma_number: str | None
    auto_approved: bool | None
    requested_amount: int | None
    refund_amount: int | None
    currency: str | None
    tracking_number: str | None
    label_url: str | None
    rma_expires_at: datetime | None
    carrier_status: str | None
    payment_status: str | None
    failure_reason: str | None
    failure_type: str | None
    needs_attention: str | None
    log: list[str]


@workflow.defn(name="return")
class ReturnWorkflow(StepwiseSaga):
    def __init__(self) -> None:
        self.inp: ReturnInput | None = None
        self.state: ReturnState = "started"
        self.step = "start"
        self.order_number = ""
        self.created: CreateReturnResult | None = None
        self.failure_reason: str | None = None
        self.failure_type: str | None = None
        self.decision: Decision | None = None
        self.decided = False
        self.escalated: str | None = None
        self.tracking_number: str | None = None
        self.label_url: str | None = None
        self.expires_at: datetime | None = None
        self.seen: set[str] = set()
        self.carrier_status: str | None = None
        self.handed_over = False
        self.parcel_delivered = False
        self.inspection: Inspection | None = None
        self.inspection_error: ApplicationError | None = None
        self.inspected: InspectionResult | None = None
        self.payment_replies: dict[str, PaymentUpdate] = {}
        self.payment_status: str | None = None
        self.saga = Saga(SagaTimings())

    # == the saga ===============================================================================
    @workflow.run
    async def run(self, inp: ReturnInput) -> ReturnSagaStatus:
        self.inp = inp
        self.saga = Saga(inp.timings)
        workflow.upsert_search_attributes(
            [
                RETURN_ID.value_set(str(inp.return_id)),
                ORDER_ID.value_set(str(inp.order_id)),
                CUSTOMER_ID.value_set(str(inp.user_id)),
                ORDER_STATUS.value_set("started"),
                NEEDS_ATTENTION.value_set(False),
            ]
        )
        if await self._request(inp) and await self._approval(inp):
            await self._authorize(inp)
            if await self._wait_for_parcel(inp):
                await self._inspect()
                await self._settle(inp)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.query_status()

    async def _request(self, inp: ReturnInput) -> bool:
        wid = workflow.info().workflow_id
        try:
            order = await self._call(
                "read the order",
                OrderActivities.get,
                GetOrderInput(order_id=inp.order_id, user_id=inp.user_id),
                queue="order",
                retry=step_retry(inp.timings),
            )
            self.order_number = order.order_number
            self.created = await self._call(
                "request the return",
                ReturnActivities.create_request,
                CreateReturnInput(
                    idempotency_key=f"{wid}:return.create_request",
                    return_id=inp.return_id,
                    order=OrderSnapshot.model_validate(order.model_dump(mode="json")),
                    items=inp.items,
                    user_id=inp.user_id,
                    window_days=inp.options.window_days,
                    auto_approve_under_amount=inp.options.auto_approve_under_amount,
                    requested_at=workflow.now(),
                    workflow_id=wid,
                ),
                queue="return",
                retry=step_retry(inp.timings),
            )
        except ActivityError as exc:
            self.failure_reason = failure_message(exc)
            self.failure_type = failure_type(exc) or "ReturnRefused"
            self._set_state("refused")
            return False
        self._log(f"requested: {self.created.requested_amount} {self.created.currency}")
        return True

    async def _approval(self, inp: ReturnInput) -> bool:
        created = self.created
        assert created is not None
        if created.status == "approved":
            self._log("approved automatically")
            self._set_state("approved")
            return True
        self._set_state("awaiting_decision")
        self._set_step("awaiting support decision")
        decided = await wait_until(
            lambda: self.decision is not None,
            timedelta(seconds=inp.options.decision_timeout_s),
            "support decision",
        )
        if not decided:
            self.escalated = (
                f"return {created.rma_number} has waited {inp.options.decision_timeout_s:g} s for a "
                "support decision (`decide` update or POST /v1/support/returns/{id}/decision)"
            )
            workflow.logger.warning("support: %s", self.escalated)
            self._attention_changed()
            await self.saga.alert(
                self.escalated,
                self.step,
                todo=f"Approve or reject it: the `decide` update, or POST /v1/support/returns/{inp.return_id}/decision.",
            )
            await workflow.wait_condition(lambda: self.decision is not None)
            self.escalated = None
            self._attention_changed()
        decision = self.decision
        assert decision is not None
        await self._must(
            "record the decision",
            ReturnActivities.decide,
            DecideInput(
                idempotency_key=f"{workflow.info().workflow_id}:return.decide",
                return_id=inp.return_id,
                approve=decision.approve,
                actor=decision.actor,
                note=decision.note,
            ),
            "return",
        )
        self.decided = True
        self._log(f"{'approved' if decision.approve else 'rejected'} by {decision.actor}")
        self._set_state("approved" if decision.approve else "rejected")
        return decision.approve

    async def _authorize(self, inp: ReturnInput) -> None:
        wid = workflow.info().workflow_id
        await self._return_label(inp)
        self.expires_at = workflow.now() + timedelta(seconds=inp.options.rma_ttl_s)
        await self._must(
            "issue the RMA",
            ReturnActivities.authorize,
            AuthorizeInput(
                idempotency_key=f"{wid}:return.authorize",
                return_id=inp.return_id,
                tracking_number=self.tracking_number,
                label_url=self.label_url,
                expires_at=self.expires_at,
            ),
            "return",
        )
        self._set_state("awaiting_parcel")
        created = self.created
        assert created is not None
        await self._notify(
            "return_approved",
            {
                "rma_number": created.rma_number,
                "label_url": self.label_url or "",
                "expires_at": self.expires_at.isoformat(),
            },
        )

    async def _return_label(self, inp: ReturnInput) -> None:
        """A prepaid label from the shopper's address, with the outbound shipment's method."""
        wid = workflow.info().workflow_id
        try:
            outbound = await self._call(
                "read the outbound shipment",
                ShippingActivities.get_shipment,
                GetShipmentInput(shipment_id=outbound_shipment_id(inp.order_id)),
                queue="shipping",
            )
        except ActivityError as exc:
            self._log(f"no prepaid label: {failure_message(exc)}")
            return
        bought = sum(int(item.get("quantity", 0)) for item in outbound.items) or 1
        sent = sum(line.quantity for line in inp.items)
        by_item = {str(item.get("order_item_id")): item for item in outbound.items}
        items = [
            {
                "variant_id": by_item[str(line.order_item_id)]["variant_id"],
                "quantity": line.quantity,
                "order_item_id": line.order_item_id,
                "name": by_item[str(line.order_item_id)].get("name"),
            }
            for line in inp.items
            if str(line.order_item_id) in by_item
        ]
        while True:
            try:
                await self._call(
                    "create return shipment",
                    ShippingActivities.create_shipment,
                    CreateShipmentInput.model_validate(
                        {
                            "idempotency_key": f"{wid}:shipping.create_shipment",
                            "shipment_id": return_shipment_id(inp.return_id),
                            "order_id": inp.order_id,
                            "user_id": inp.user_id,
                            "direction": "return",
                            "method_id": outbound.method_id,
                            "address": outbound.address,
                            "weight_grams": max(1, min(70_000, outbound.weight_grams * sent // bought)),
                            "items": items,
                        }
                    ),
                    queue="shipping",
                )
                label = await self._call(
                    "buy return label",
                    ShippingActivities.buy_label,
                    BuyLabelInput(
                        idempotency_key=f"{wid}:shipping.buy_label",
                        shipment_id=return_shipment_id(inp.return_id),
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
                if failure_type(exc) == "ShipmentAlreadyExists":
                    # One return label per order (shipping's rule): a later return of the same order
                    # gets its RMA without a prepaid label; support records the parcel at inspection.
                    self._log(f"no prepaid label: {failure_message(exc)}")
                    return
                decision = await self.saga.park(
                    f"the return label could not be bought: {failure_message(exc)}"
                )
                if decision.action == "skip":
                    self._log(f"no prepaid label (skipped by {decision.actor}: {decision.note})")
                    return
                continue
            self.tracking_number, self.label_url = label.tracking_number, label.label_url
            self._log(f"return label {label.tracking_number}")
            return

    async def _wait_for_parcel(self, inp: ReturnInput) -> bool:
        """Until the carrier has the parcel, the RMA may expire; after that, no deadline."""
        assert self.expires_at is not None
        self._set_step("awaiting the parcel")
        arrived = await wait_until(
            lambda: self.handed_over or self.parcel_delivered or self.inspection is not None,
            self.expires_at - workflow.now(),
            "RMA expiry",
        )
        if not arrived:
            await self._expire(inp)
            return False
        if not self.parcel_delivered and self.inspection is None:
            self._set_state("in_transit")
            await workflow.wait_condition(lambda: self.parcel_delivered or self.inspection is not None)
        await self._must(
            "record the parcel",
            ReturnActivities.record_parcel_received,
            ParcelReceivedInput(
                idempotency_key=f"{workflow.info().workflow_id}:return.record_parcel_received",
                return_id=inp.return_id,
                actor="carrier"
                if self.parcel_delivered or self.inspection is None
                else self.inspection.actor,
            ),
            "return",
        )
        self._set_state("received")
        return True

    async def _expire(self, inp: ReturnInput) -> None:
        wid = workflow.info().workflow_id
        await self._must(
            "expire the RMA",
            ReturnActivities.set_status,
            SetStatusInput(
                idempotency_key=f"{wid}:return.expire",
                return_id=inp.return_id,
                status="expired",
                note="the parcel was not handed to the carrier before the RMA expired",
            ),
            "return",
        )
        if self.tracking_number is not None:
            try:
                await self._call(
                    "void the return label",
                    ShippingActivities.cancel_shipment,
                    CancelShipmentInput(
                        idempotency_key=f"{wid}:shipping.cancel_shipment",
                        shipment_id=return_shipment_id(inp.return_id),
                    ),
                    queue="shipping",
                )
            except ActivityError as exc:  # the label is in use after all: keep the record, say so
                self._log(f"return label not voided: {failure_message(exc)}")
        self._set_state("expired")

    async def _inspect(self) -> None:
        inp = self._input()
        self._set_step("awaiting inspection")
        while True:
            await workflow.wait_condition(lambda: self.inspection is not None)
            inspection = self.inspection
            assert inspection is not None
            try:
                self.inspected = await self._call(
                    "record the inspection",
                    ReturnActivities.record_inspection,
                    InspectionInput(
                        idempotency_key=f"{workflow.info().workflow_id}:return.record_inspection",
                        return_id=inp.return_id,
                        items=inspection.items,
                        actor=inspection.actor,
                    ),
                    queue="return",
                )
            except ActivityError as exc:  # refused (wrong lines, more accepted than sent): ask again
                self.inspection_error = ApplicationError(
                    failure_message(exc), type=failure_type(exc) or "InvalidInspection", non_retryable=True
                )
                self.inspection = None
                continue
            self._log(f"inspected by {inspection.actor}: refund {self.inspected.refund_amount}")
            self._set_state("inspected")
            return

    async def _settle(self, inp: ReturnInput) -> None:
        """Refund, restock, order status, notification: each once, in this order."""
        wid = workflow.info().workflow_id
        inspected = self.inspected
        created = self.created
        assert inspected is not None and created is not None
        if inspected.refund_amount > 0 and inspected.payment_id is not None:
            self._set_state("refunding")
            update = await self._refund(inp, inspected.refund_amount)
            await self._must(
                "record the refund",
                ReturnActivities.record_refund,
                RecordRefundInput(
                    idempotency_key=f"{wid}:return.record_refund",
                    return_id=inp.return_id,
                    payment_id=inspected.payment_id,
                    amount=inspected.refund_amount,
                    status="failed" if update.status in ("failed", "declined") else "succeeded",
                ),
                "return",
            )
        if inspected.restock_lines:
            await self._must(
                "restock accepted items",
                ProductActivities.restock,
                RestockInput.model_validate(
                    {
                        "idempotency_key": f"{wid}:product.restock",
                        "lines": [
                            {"variant_id": line.variant_id, "quantity": line.quantity}
                            for line in inspected.restock_lines
                        ],
                    }
                ),
                "product",
            )
        accepted = [
            {"order_item_id": line.order_item_id, "quantity": line.quantity}
            for line in inspected.breakdown.items
            if line.quantity > 0
        ]
        if accepted:
            await self._must(
                "record the return on the order",
                OrderActivities.record_return,
                RecordReturnInput.model_validate(
                    {
                        "idempotency_key": f"{wid}:order.record_return",
                        "order_id": inp.order_id,
                        "user_id": inp.user_id,
                        "items": accepted,
                        "reason": f"return {created.rma_number}",
                        "actor": "return",
                    }
                ),
                "order",
            )
        if inspected.refund_amount > 0:
            await self._notify(
                "refund_issued",
                {
                    "rma_number": created.rma_number,
                    "refund_amount": inspected.refund_amount,
                    "currency": inspected.currency,
                },
            )
            self._set_state("refunded")
        else:
            await self._must(
                "close the return",
                ReturnActivities.set_status,
                SetStatusInput(
                    idempotency_key=f"{wid}:return.close",
                    return_id=inp.return_id,
                    status="closed",
                    note="nothing accepted: no refund",
                ),
                "return",
            )
            self._set_state("closed")

    async def _refund(self, inp: ReturnInput, amount: int) -> PaymentUpdate:
        """Ask the order's payment saga for the refund and wait for its answer (deduplicated there)."""
        wid = workflow.info().workflow_id
        request_id = f"return-{inp.return_id}"
        self._set_step("refund")
        while True:
            try:
                await workflow.get_external_workflow_handle(f"payment-{inp.order_id}").signal(
                    PaymentWorkflow.command,
                    PaymentCommand(
                        kind="refund",
                        request_id=request_id,
                        amount=amount,
                        reason=f"return {self.created.rma_number if self.created else inp.return_id}",
                        return_id=inp.return_id,
                        reply_to=wid,
                    ),
                )
            except Exception as exc:  # the payment saga has ended (refund window over): support decides
                decision = await self.saga.park(f"the payment saga did not take the refund: {exc}")
                if decision.action == "skip":
                    self._log(f"refund skipped by {decision.actor}: {decision.note}")
                    return PaymentUpdate(payment_id=uuid.UUID(int=0), status="failed", request_id=request_id)
                continue
            await workflow.wait_condition(lambda: request_id in self.payment_replies)
            reply = self.payment_replies[request_id]
            self._log(f"refund {amount}: payment {reply.status}")
            return reply

    # == activity plumbing =======================================================================
    async def _notify(self, template: str, extra: dict[str, Any]) -> None:
        inp = self._input()
        context: dict[str, Any] = {
            "first_name": inp.first_name or "there",
            "order_number": self.order_number,
            "return_id": str(inp.return_id),
            **extra,
        }
        await send_email(self.saga, template, user_id=inp.user_id, recipient=inp.email, context=context)

    def _input(self) -> ReturnInput:
        assert self.inp is not None
        return self.inp

    def _set_state(self, state: ReturnState) -> None:
        self.state = state
        workflow.upsert_search_attributes([ORDER_STATUS.value_set(state)])
        self._details()

    def _attention(self) -> str | None:
        parts = [p for p in (self.escalated, self.saga.parked) if p]
        return "; ".join(parts) or None

    def _attention_changed(self) -> None:
        workflow.upsert_search_attributes([NEEDS_ATTENTION.value_set(self._attention() is not None)])
        self._details()

    def _details(self) -> None:
        created = self.created
        title = created.rma_number if created else str(self.inp.return_id if self.inp else "")
        lines = [f"**Return {title}** of order {self.order_number}: {self.state}"]
        if created is not None:
            lines.append(
                f"\nRequested {created.requested_amount / 100:.2f} {created.currency}"
                + (" (approved automatically)" if created.auto_approved else "")
            )
        if self.state == "awaiting_decision":
            lines.append(
                "\nWaiting for support: the `decide` update `{approve, note}` "
                "(or POST /v1/support/returns/{return_id}/decision)."
            )
        if self.state in ("awaiting_parcel", "in_transit", "received"):
            lines.append(
                "\nInspect with the `inspect` update `{items: [{order_item_id, quantity_accepted, "
                "condition}]}` (or POST /v1/support/returns/{return_id}/inspection)."
            )
        if self.failure_reason:
            lines.append(f"\nRefused ({self.failure_type}): {self.failure_reason}")
        attention = self._attention()
        if attention:
            lines.append(f"\n## Needs attention\n{attention}")
        if self.saga.log:
            lines.append("\nSteps: " + ", ".join(self.saga.log[-12:]))
        workflow.set_current_details("\n".join(lines))

    @workflow.query
    def query_status(self) -> ReturnSagaStatus:
        inp = self.inp
        created = self.created
        inspected = self.inspected
        return ReturnSagaStatus(
            workflow_id=workflow.info().workflow_id,
            return_id=inp.return_id if inp else uuid.UUID(int=0),
            order_id=inp.order_id if inp else uuid.UUID(int=0),
            status=self.state,
            step=self.step,
            rma_number=created.rma_number if created else None,
            auto_approved=created.auto_approved if created else None,
            requested_amount=created.requested_amount if created else None,
            refund_amount=inspected.refund_amount if inspected else None,
            currency=created.currency if created else None,
            tracking_number=self.tracking_number,
            label_url=self.label_url,
            rma_expires_at=self.expires_at,
            carrier_status=self.carrier_status,
            payment_status=self.payment_status,
            failure_reason=self.failure_reason,
            failure_type=self.failure_type,
            needs_attention=self._attention(),
            log=self.saga.log,
        )

    # == messages ================================================================================
    @workflow.update
    async def submitted(self) -> ReturnSubmitted:
        """Answers once the request is recorded; refused requests fail with the service's error type."""
        await workflow.wait_condition(lambda: self.created is not None or self.state == "refused")
        created = self.created
        if created is None:
            raise ApplicationError(
                self.failure_reason or "the return was refused",
                type=self.failure_type or "ReturnRefused",
                non_retryable=True,
            )
        return ReturnSubmitted.model_validate(created.model_dump())

    @workflow.update
    async def decide(self, decision: Decision) -> UpdateOutcome:
        self.decision = decision
        await workflow.wait_condition(lambda: self.decided)
        return UpdateOutcome(
            return_id=self._input().return_id,
            status=self.state,
            message="approved" if decision.approve else "rejected",
        )

    @decide.validator
    def _validate_decide(self, decision: Decision) -> None:
        if self.state != "awaiting_decision" or self.decision is not None:
            raise ApplicationError(
                f"the return is {self.state}; it is not waiting for a decision",
                type="ReturnNotAwaitingDecision",
            )

    @workflow.update
    async def inspect(self, inspection: Inspection) -> UpdateOutcome:
        self.inspection_error = None
        self.inspection = inspection
        await workflow.wait_condition(lambda: self.inspected is not None or self.inspection_error is not None)
        if self.inspected is None:
            assert self.inspection_error is not None
            raise self.inspection_error
        return UpdateOutcome(
            return_id=self._input().return_id,
            status=self.state,
            message="inspection recorded",
            refund_amount=self.inspected.refund_amount,
        )

    @inspect.validator
    def _validate_inspect(self, inspection: Inspection) -> None:
        if self.state not in ("awaiting_parcel", "in_transit", "received") or self.inspection is not None:
            raise ApplicationError(
                f"the return is {self.state}; it is not waiting for an inspection",
                type="ReturnNotAwaitingInspection",
            )

    @workflow.signal
    def tracking_event(self, event: TrackingSignal) -> None:
        if event.event_id in self.seen:
            return
        self.seen.add(event.event_id)
        self.carrier_status = event.status
        if event.status in SCANNED:
            self.handed_over = True
        if event.status == "delivered":
            self.parcel_delivered = True

    @workflow.signal
    def payment_update(self, update: PaymentUpdate) -> None:
        self.payment_status = update.status
        if update.request_id:
            self.payment_replies[update.request_id] = update

    @workflow.update
    def resolve(self, decision: Resolution) -> str:
        self.saga.resolve(decision)
        return "resolved"

    @resolve.validator
    def _validate_resolve(self, decision: Resolution) -> None:
        if self.saga.parked is None:
            raise ApplicationError("nothing is waiting for a decision", type="NothingToResolve")
