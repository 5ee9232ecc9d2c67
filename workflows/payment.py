"""``payment``: one workflow per payment, the only writer of its money movements.

authorize (the checkout's pivot; may wait for the shopper's extra step, reported by a PSP webhook)
-> then waits for commands: capture (first carrier scan, or at once by setting), void, refund
(full or partial, for cancels and returns) -> authorization expiry by timer. Every movement is an
activity on the ``payment`` task queue writing a ``payment_transactions`` row with the provider call,
idempotent by key. Outcomes are signalled back to the workflow that asked (``payment_update``)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.payment import (
        AuthorizeInput,
        CaptureInput,
        PaymentActivities,
        RefreshInput,
        RefundInput,
        VoidInput,
    )
    from core.temporal import ORDER_ID, SAGA_STEP
    from workflows.messages import (
        PaymentCommand,
        PaymentInput,
        PaymentState,
        PaymentStatus,
        PaymentUpdate,
        ProviderSignal,
    )
    from workflows.saga import Resolution, Saga, SagaTimings, failure_message, forever_retry, wait_until


@workflow.defn(name="payment")
class PaymentWorkflow:
    def __init__(self) -> None:
        self.inp: PaymentInput | None = None
        self.status: PaymentStatus = "pending"
        self.decline_code: str | None = None
        self.next_action_url: str | None = None
        self.captured = 0
        self.refunded = 0
        self.commands: list[PaymentCommand] = []
        self.done_requests: set[str] = set()
        self.seen_events: set[str] = set()
        self.provider_outcome: ProviderSignal | None = None
        self.history: list[str] = []
        self.saga = Saga(SagaTimings())

    # -- run ----------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: PaymentInput) -> PaymentState:
        self.inp = inp
        self.saga = Saga(inp.timings)
        # The checkout starts its payment with these attributes already set (no upsert event, no
        # extra visibility write); a payment started without them (older checkouts) sets them here.
        if workflow.info().typed_search_attributes.get(ORDER_ID) is None:
            workflow.upsert_search_attributes(
                [ORDER_ID.value_set(str(inp.order_id)), SAGA_STEP.value_set("authorize")]
            )
        await self._authorize(inp)
        await self._reply(inp.reply_to, None)
        if self.status != "authorized":
            return self.state()
        if inp.capture_immediately:
            self.commands.insert(0, PaymentCommand(kind="capture", request_id="immediate"))
        await self._serve_commands(inp)
        return self.state()

    async def _authorize(self, inp: PaymentInput) -> None:
        result = await workflow.execute_activity_method(
            PaymentActivities.authorize,
            AuthorizeInput(
                idempotency_key=f"{workflow.info().workflow_id}:authorize",
                payment_id=inp.payment_id,
                order_id=inp.order_id,
                user_id=inp.user_id,
                amount=inp.amount,
                currency=inp.currency,
                psp_token=inp.psp_token,
                psp_token_encrypted=inp.psp_token_encrypted,
                webhook_url=inp.webhook_url,
            ),
            task_queue="payment",
            start_to_close_timeout=timedelta(seconds=inp.timings.activity_timeout_s),
            retry_policy=forever_retry(),
            summary=f"authorize {inp.amount / 100:.2f} {inp.currency}",
        )
        self.decline_code = result.decline_code
        self.next_action_url = result.next_action_url
        self.history.append(f"authorize: {result.status}")
        if result.status != "requires_action":
            self.status = "authorized" if result.status == "authorized" else "declined"
            return
        self.status = "requires_action"
        workflow.set_current_details(
            f"Waiting for the shopper's authentication step ({inp.action_timeout_s:g} s)."
        )
        await self._reply(inp.reply_to, None)
        arrived = await wait_until(
            lambda: self.provider_outcome is not None,
            timedelta(seconds=inp.action_timeout_s),
            "shopper authentication",
        )
        # The webhook (or its absence) only says when to look: the provider's answer is authoritative.
        refreshed = await workflow.execute_activity_method(
            PaymentActivities.refresh,
            RefreshInput(
                idempotency_key=f"{workflow.info().workflow_id}:authentication",
                payment_id=inp.payment_id,
                order_id=inp.order_id,
            ),
            task_queue="payment",
            start_to_close_timeout=timedelta(seconds=inp.timings.activity_timeout_s),
            retry_policy=forever_retry(),
            summary="read the authentication outcome from the provider",
        )
        if refreshed.status == "authorized":
            self.status = "authorized"
        elif refreshed.status == "requires_action":  # the shopper never finished: give the hold back
            self.status = "authorized"
            await self._run(PaymentCommand(kind="void", request_id="authentication-timeout"))
            self.status = "declined"
            self.decline_code = "authentication_timeout"
        else:
            self.status = "declined"
            self.decline_code = (
                self.decline_code
                or (self.provider_outcome.decline_code if self.provider_outcome else None)
                or "authentication_failed"
            )
        self.history.append(
            f"authentication: {self.status} (webhook {'received' if arrived else 'not received'})"
        )
        workflow.set_current_details("")

    async def _serve_commands(self, inp: PaymentInput) -> None:
        expiry = workflow.now() + timedelta(seconds=inp.authorization_ttl_s)
        while True:
            if self.status in ("voided", "expired") or (
                self.status == "refunded" and self.refunded >= self.captured
            ):
                return
            if self.captured == 0:
                window = expiry - workflow.now()
            else:
                window = timedelta(seconds=inp.refund_window_s)
            got = await wait_until(lambda: bool(self.commands), window, "next payment command")
            if not got:
                if self.captured == 0:
                    await self._run(
                        PaymentCommand(
                            kind="void",
                            request_id="authorization-expiry",
                            reason="authorization expired uncaptured",
                        )
                    )
                    self.status = "expired"
                    await self._reply(inp.reply_to, None)
                return
            command = self.commands.pop(0)
            if command.request_id in self.done_requests:
                continue
            await self._run(command)
            self.done_requests.add(command.request_id)
            await self._reply(command.reply_to or inp.reply_to, command.request_id)

    async def _run(self, command: PaymentCommand) -> None:
        inp = self.inp
        assert inp is not None
        key = f"{workflow.info().workflow_id}:{command.kind}:{command.request_id}"
        while True:
            try:
                if command.kind == "capture":
                    if self.status != "authorized":
                        self.history.append(f"capture ignored in status {self.status}")
                        return
                    cap = await self._call(
                        PaymentActivities.capture,
                        CaptureInput(
                            idempotency_key=key,
                            payment_id=inp.payment_id,
                            order_id=inp.order_id,
                            amount=command.amount,
                        ),
                        "capture",
                    )
                    self.captured = cap.amount_captured
                    self.status = "captured"
                elif command.kind == "void" or (command.kind == "refund" and self.captured == 0):
                    if self.status not in ("authorized",):
                        return
                    await self._call(
                        PaymentActivities.void,
                        VoidInput(idempotency_key=key, payment_id=inp.payment_id, order_id=inp.order_id),
                        "void the authorization",
                    )
                    self.status = "voided"
                else:
                    amount = min(
                        command.amount or self.captured - self.refunded, self.captured - self.refunded
                    )
                    if amount <= 0:
                        return
                    await self._call(
                        PaymentActivities.refund,
                        RefundInput(
                            idempotency_key=key,
                            payment_id=inp.payment_id,
                            order_id=inp.order_id,
                            amount=amount,
                            reason=command.reason or "refund",
                            return_id=command.return_id,
                        ),
                        f"refund {amount / 100:.2f} {inp.currency}",
                    )
                    self.refunded += amount
                    if self.refunded >= self.captured:
                        self.status = "refunded"
                self.history.append(f"{command.kind} {command.request_id}: {self.status}")
                return
            except ActivityError as exc:
                decision = await self.saga.park(f"payment **{command.kind}** failed: {failure_message(exc)}")
                if decision.action == "skip":
                    self.history.append(f"{command.kind} skipped by {decision.actor}: {decision.note}")
                    return

    async def _call(self, method: Any, arg: BaseModel, summary: str) -> Any:
        inp = self.inp
        assert inp is not None
        return await workflow.execute_activity_method(
            method,
            arg,
            task_queue="payment",
            start_to_close_timeout=timedelta(seconds=inp.timings.activity_timeout_s),
            retry_policy=forever_retry(),
            summary=summary,
        )

    async def _reply(self, workflow_id: str, request_id: str | None) -> None:
        inp = self.inp
        assert inp is not None
        update = PaymentUpdate(
            payment_id=inp.payment_id,
            status=self.status,
            request_id=request_id,
            decline_code=self.decline_code,
            refunded_amount=self.refunded,
            next_action_url=self.next_action_url,
        )
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal("payment_update", update)
        except Exception as exc:  # the requester may have finished; the state stays queryable
            workflow.logger.info("could not notify %s: %s", workflow_id, exc)

    # -- messages -----------------------------------------------------------------------------
    @workflow.signal
    def provider_event(self, event: ProviderSignal) -> None:
        if event.event_id in self.seen_events:
            return
        self.seen_events.add(event.event_id)
        if (
            event.type in ("authorization.succeeded", "authorization.failed")
            and self.provider_outcome is None
        ):
            self.provider_outcome = event

    @workflow.signal
    def command(self, command: PaymentCommand) -> None:
        if command.request_id not in self.done_requests and all(
            c.request_id != command.request_id for c in self.commands
        ):
            self.commands.append(command)

    @workflow.update
    def resolve(self, decision: Resolution) -> str:
        self.saga.resolve(decision)
        return "resolved"

    @workflow.query
    def state(self) -> PaymentState:
        inp = self.inp
        return PaymentState(
            payment_id=inp.payment_id if inp else uuid.UUID(int=0),
            status=self.status,
            amount_authorized=inp.amount
            if inp and self.status not in ("pending", "declined", "failed")
            else 0,
            amount_captured=self.captured,
            amount_refunded=self.refunded,
            decline_code=self.decline_code,
            next_action_url=self.next_action_url,
            needs_attention=self.saga.parked,
            history=self.history,
        )
