"""``checkout``: the order saga, from a locked cart to a paid, confirmed order, and on to shipping.

Before the pivot (payment authorization) every step registers its compensation *before* it runs;
steps that do not need each other's results run at the same time (``|``). The address and card
come with the input (the API reads them when it accepts the checkout):

    lock cart -> price and reserve items -> evaluate promotions
    -> reserve coupon -> quote shipping -> create order
    -> authorize payment (child ``payment`` workflow; may wait for the shopper's extra step)

A business refusal (out of stock, coupon exhausted, card declined, address not served) or a
shopper's cancel runs the compensations in reverse and ends the order FAILED / CANCELLED with a
reason the shopper can read. After the pivot the steps retry until they succeed, all at once:

    (confirm order -> notify) | commit inventory | commit coupon | convert cart | record promotions
    -> start shipping

Search attributes change with the status only (with the step and the total beside it), not at every
step: each upsert is a history event and a visibility write on the server (README, Performance).
Checkouts recorded before this shape (patch ``lean-checkout``) replay their sequential steps.

The workflow then stays open until the order ships (signal from the shipping saga), so that a
cancel before shipping can still void or refund, restock and release.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, SearchAttributeUpdate, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.cart import CartActivities, ConvertCartInput, LockCartInput, UnlockCartInput
    from activities.discount import (
        DiscountActivities,
        EvaluatePromotionsInput,
        OrderCouponInput,
        RecordPromotionsInput,
        ReserveCouponInput,
    )
    from activities.order import (
        CancelOrderInput,
        ConfirmOrderInput,
        CreateOrderInput,
        FailOrderInput,
        OrderActivities,
    )
    from activities.product import (
        CommitInventoryInput,
        PriceAndReserveResult,
        PriceItemsInput,
        PriceItemsResult,
        ProductActivities,
        ReleaseInventoryInput,
        ReserveInventoryInput,
        RestockInput,
    )
    from activities.shipping import QuoteInput, ShippingActivities
    from activities.user import GetCheckoutDetailsInput, GetCheckoutDetailsResult, UserActivities
    from core.registry import SAGAS_TASK_QUEUE
    from core.temporal import CUSTOMER_ID, ORDER_ID, ORDER_STATUS, ORDER_TOTAL, SAGA_STEP
    from workflows.messages import (
        TERMINAL,
        CancelOutcome,
        CancelRequest,
        CheckoutInput,
        CheckoutState,
        CheckoutStatus,
        PaymentCommand,
        PaymentInput,
        PaymentUpdate,
        ShipmentUpdate,
        Totals,
    )
    from workflows.payment import PaymentWorkflow
    from workflows.saga import (
        Resolution,
        Saga,
        SagaTimings,
        compensation_retry,
        failure_message,
        failure_type,
        run_step,
        run_until_done,
        send_email,
        set_step,
        step_retry,
        wait_until,
    )
    from workflows.shipping import ShippingCancel, ShippingInput, ShippingWorkflow


# == the inputs of the checkout's steps (pure; bench/direct.py builds the same ones) ================
def promotions_input(priced: PriceItemsResult) -> EvaluatePromotionsInput:
    return EvaluatePromotionsInput.model_validate(
        {
            "currency": priced.currency,
            "lines": [
                {"product_id": x.product_id, "unit_price_amount": x.unit_price_amount, "quantity": x.quantity}
                for x in priced.lines
            ],
        }
    )


def quote_input(
    details: GetCheckoutDetailsResult, method_id: uuid.UUID, priced: PriceItemsResult, discount_amount: int
) -> QuoteInput:
    return QuoteInput.model_validate(
        {
            "address": {"country": details.address.country, "postal_code": details.address.postal_code},
            "shipping_method_id": method_id,
            "weight_grams": max(1, priced.total_weight_grams),
            "subtotal_amount": priced.subtotal_amount - discount_amount,
            "currency": priced.currency,
        }
    )


def order_input(
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    cart_id: uuid.UUID,
    workflow_id: str,
    priced: PriceItemsResult,
    totals: Totals,
    coupon_code: str | None,
    details: GetCheckoutDetailsResult,
) -> CreateOrderInput:
    address = details.address
    return CreateOrderInput.model_validate(
        {
            "idempotency_key": f"{workflow_id}:order.create",
            "order_id": order_id,
            "user_id": user_id,
            "cart_id": cart_id,
            "workflow_id": workflow_id,
            "currency": totals.currency,
            "lines": [
                {
                    "product_id": x.product_id,
                    "variant_id": x.variant_id,
                    "sku": x.sku,
                    "name": x.name,
                    "unit_price_amount": x.unit_price_amount,
                    "quantity": x.quantity,
                }
                for x in priced.lines
            ],
            "subtotal_amount": totals.subtotal_amount,
            "discount_amount": totals.discount_amount,
            "shipping_amount": totals.shipping_amount,
            "tax_amount": totals.tax_amount,
            "total_amount": totals.total_amount,
            "coupon_code": coupon_code,
            "shipping_address": {
                "recipient_name": address.name,
                "line1": address.line1,
                "line2": address.line2,
                "city": address.city,
                "region": address.region,
                "postal_code": address.postal_code,
                "country_code": address.country,
                "phone": address.phone,
            },
        }
    )


def payment_search_attributes(order_id: uuid.UUID) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [SearchAttributePair(ORDER_ID, str(order_id)), SearchAttributePair(SAGA_STEP, "authorize")]
    )


class _Stop(Exception):
    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@workflow.defn(name="checkout")
class CheckoutWorkflow:
    def __init__(self) -> None:
        self.inp: CheckoutInput | None = None
        self.status: CheckoutState = "started"
        self.step = "start"
        self.order_number: str | None = None
        self.totals: Totals | None = None
        self.failure_reason: str | None = None
        self.failure_type: str | None = None
        self.cancel_request: CancelRequest | None = None
        self.payment_id: uuid.UUID | None = None
        self.payment: PaymentUpdate | None = None
        self.payment_replies: set[str] = set()
        self.shipment: ShipmentUpdate | None = None
        self.shipping_started = False
        self.cart_id: uuid.UUID | None = None
        self.lines: list[dict[str, Any]] = []
        self.promotions: list[dict[str, Any]] = []
        self.saga = Saga(SagaTimings())
        self.lean = True  # False while replaying a checkout recorded before patch "lean-checkout"

    # == the saga ===============================================================================
    @workflow.run
    async def run(self, inp: CheckoutInput) -> CheckoutStatus:
        self.inp = inp
        self.lean = workflow.patched("lean-checkout")
        self.saga = Saga(inp.timings, step_attribute=self.lean)
        # The API starts the checkout with these attributes; a checkout started without them sets them.
        if not self.lean or workflow.info().typed_search_attributes.get(ORDER_ID) is None:
            workflow.upsert_search_attributes(
                [
                    ORDER_ID.value_set(str(inp.order_id)),
                    CUSTOMER_ID.value_set(str(inp.user_id)),
                    ORDER_STATUS.value_set("started"),
                ]
            )
        try:
            await self._until_pivot(inp)
        except (_Stop, ActivityError) as exc:
            await self._fail(exc)
            await workflow.wait_condition(workflow.all_handlers_finished)
            return self.query_status()

        await self._after_pivot(inp)
        # Open until the order ships or is cancelled (a cancel before shipping still works).
        await workflow.wait_condition(lambda: self.cancel_request is not None or self.shipment is not None)
        if self.shipment is None and self.shipping_started:  # the carrier may have the parcel already
            await self._stop_shipping()
        if self.shipment is not None and self.shipment.status == "shipped":
            self._set_status("shipped")
        else:
            reason = (
                self.cancel_request.reason
                if self.cancel_request
                else (self.shipment.message if self.shipment else "cancelled")
            )
            await self._cancel_after_confirmation(reason)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.query_status()

    async def _until_pivot(self, inp: CheckoutInput) -> None:
        wid = workflow.info().workflow_id
        load_details = lambda: self._step(  # noqa: E731
            "load address and payment method",
            UserActivities.get_checkout_details,
            GetCheckoutDetailsInput(
                user_id=inp.user_id,
                address_id=inp.shipping_address_id,
                payment_method_id=inp.payment_method_id,
            ),
            "user",
        )
        unlock = lambda: self._compensate(  # noqa: E731
            CartActivities.unlock,
            UnlockCartInput(idempotency_key=f"{wid}:cart.unlock", cart_id=self._cart(), workflow_id=wid),
            "cart",
        )
        lock = lambda: self._step(  # noqa: E731
            "lock cart",
            CartActivities.lock,
            LockCartInput(idempotency_key=f"{wid}:cart.lock", user_id=inp.user_id, workflow_id=wid),
            "cart",
        )
        release = lambda: self._compensate(  # noqa: E731
            ProductActivities.release_inventory,
            ReleaseInventoryInput(idempotency_key=f"{wid}:product.release", order_id=inp.order_id),
            "product",
        )
        if self.lean:
            self.saga.add("cart.unlock", unlock)
            if inp.details is not None:  # read by the API when it accepted the checkout
                details, cart = inp.details, await lock()
            else:  # started without them (older API versions): a step of its own
                details, cart = await self._together(load_details(), lock())
            self.cart_id = cart.cart_id
            stock_lines = [{"variant_id": i.variant_id, "quantity": i.quantity} for i in cart.items]
            self.saga.add("product.release_inventory", release)
            priced: PriceAndReserveResult = await self._step(
                "price and reserve items",
                ProductActivities.price_and_reserve,
                self._reserve_input(stock_lines),
                "product",
            )
        else:  # recorded before "lean-checkout": one step after the other
            details = await load_details()
            self.saga.add("cart.unlock", unlock)
            cart = await lock()
            self.cart_id = cart.cart_id
            stock_lines = [{"variant_id": i.variant_id, "quantity": i.quantity} for i in cart.items]
            priced = await self._step(
                "price items",
                ProductActivities.price_items,
                PriceItemsInput.model_validate({"lines": stock_lines}),
                "product",
            )
        self.lines = [line.model_dump() for line in priced.lines]

        # Automatic promotions were added after checkouts were already running: the patch keeps the
        # histories recorded before it (tests/histories/checkout) replaying unchanged.
        promotion_amount = 0
        if self.lean or workflow.patched("automatic-promotions"):
            promotions = await self._step(
                "evaluate promotions",
                DiscountActivities.evaluate_promotions,
                promotions_input(priced),
                "discount",
            )
            promotion_amount = min(promotions.discount_amount, priced.subtotal_amount)
            self.promotions = [p.model_dump(mode="json") for p in promotions.applied]

        discount_amount, free_shipping = promotion_amount, False
        if inp.coupon_code:
            self.saga.add(
                "discount.release_coupon",
                lambda: self._compensate(
                    DiscountActivities.release_coupon,
                    OrderCouponInput(idempotency_key=f"{wid}:discount.release", order_id=inp.order_id),
                    "discount",
                ),
            )
            coupon = await self._step(
                "reserve coupon",
                DiscountActivities.reserve_coupon,
                ReserveCouponInput(
                    idempotency_key=f"{wid}:discount.reserve",
                    code=inp.coupon_code,
                    user_id=inp.user_id,
                    order_id=inp.order_id,
                    subtotal_amount=priced.subtotal_amount - promotion_amount,
                    currency=priced.currency,
                ),
                "discount",
            )
            discount_amount, free_shipping = promotion_amount + coupon.discount_amount, coupon.free_shipping

        quote = await self._step(
            "quote shipping",
            ShippingActivities.quote,
            quote_input(details, inp.shipping_method_id, priced, discount_amount),
            "shipping",
        )
        shipping_amount = 0 if free_shipping else quote.amount
        self.totals = Totals(
            currency=priced.currency,
            subtotal_amount=priced.subtotal_amount,
            discount_amount=discount_amount,
            shipping_amount=shipping_amount,
            tax_amount=0,  # prices are tax-inclusive
            total_amount=priced.subtotal_amount - discount_amount + shipping_amount,
        )
        if not self.lean:
            workflow.upsert_search_attributes([ORDER_TOTAL.value_set(self.totals.total_amount)])
            self.saga.add("product.release_inventory", release)
            await self._step(
                "reserve inventory",
                ProductActivities.reserve_inventory,
                self._reserve_input(stock_lines),
                "product",
            )

        self.saga.add(
            "order.fail",
            lambda: self._compensate(
                OrderActivities.fail,
                FailOrderInput(
                    idempotency_key=f"{wid}:order.fail",
                    order_id=inp.order_id,
                    user_id=inp.user_id,
                    reason=self.failure_reason or "checkout failed",
                ),
                "order",
            ),
        )
        created = await self._step(
            "create order",
            OrderActivities.create,
            order_input(
                order_id=inp.order_id,
                user_id=inp.user_id,
                cart_id=cart.cart_id,
                workflow_id=wid,
                priced=priced,
                totals=self.totals,
                coupon_code=inp.coupon_code,
                details=details,
            ),
            "order",
        )
        self.order_number = created.order_number
        if self.lean:
            self.step = "authorize payment"
        self._set_status("pending_payment")

        # The pivot. The void is registered first: a timed-out start may still have authorized.
        self.payment_id = uuid.UUID(str(workflow.uuid4()))
        self.saga.add("payment.void", self._void_payment)
        if not self.lean:
            set_step("authorize payment")
        self.step = "authorize payment"
        await workflow.start_child_workflow(
            PaymentWorkflow.run,
            PaymentInput(
                payment_id=self.payment_id,
                order_id=inp.order_id,
                user_id=inp.user_id,
                amount=self.totals.total_amount,
                currency=self.totals.currency,
                psp_token=details.payment_method.psp_token,
                psp_token_encrypted=details.payment_method.psp_token_encrypted,
                webhook_url=inp.psp_webhook_url,
                reply_to=wid,
                capture_immediately=inp.capture_immediately,
                timings=inp.timings,
                action_timeout_s=inp.payment.action_timeout_s,
                authorization_ttl_s=inp.payment.authorization_ttl_s,
                refund_window_s=inp.payment.refund_window_s,
            ),
            id=self.payment_workflow_id(),
            task_queue=SAGAS_TASK_QUEUE,
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=payment_search_attributes(inp.order_id) if self.lean else None,
            static_summary=f"payment of order {self.order_number}",
        )
        decided = await wait_until(
            lambda: (
                self.cancel_request is not None
                or (self.payment is not None and self.payment.status not in ("pending", "requires_action"))
            ),
            timedelta(seconds=inp.payment_timeout_s),
            "payment outcome",
        )
        self._check_cancel()
        if not decided or self.payment is None:
            raise _Stop("the payment did not complete in time", "PaymentTimeout")
        if self.payment.status != "authorized":
            code = self.payment.decline_code or self.payment.status
            raise _Stop(f"the card was declined ({code})", "PaymentDeclined")

    async def _after_pivot(self, inp: CheckoutInput) -> None:
        wid = workflow.info().workflow_id
        assert self.payment_id is not None and self.cart_id is not None and self.totals is not None
        confirm = self._must(
            "confirm order",
            OrderActivities.confirm,
            ConfirmOrderInput(
                idempotency_key=f"{wid}:order.confirm",
                order_id=inp.order_id,
                user_id=inp.user_id,
                payment_id=self.payment_id,
            ),
            "order",
        )
        commits = [
            lambda: self._must(
                "commit inventory",
                ProductActivities.commit_inventory,
                CommitInventoryInput(idempotency_key=f"{wid}:product.commit", order_id=inp.order_id),
                "product",
            )
        ]
        if inp.coupon_code:
            commits.append(
                lambda: self._must(
                    "commit coupon",
                    DiscountActivities.commit_coupon,
                    OrderCouponInput(idempotency_key=f"{wid}:discount.commit", order_id=inp.order_id),
                    "discount",
                )
            )
        commits.append(
            lambda: self._must(
                "convert cart",
                CartActivities.convert,
                ConvertCartInput(
                    idempotency_key=f"{wid}:cart.convert",
                    cart_id=self.cart_id,
                    workflow_id=wid,
                    order_id=inp.order_id,
                ),
                "cart",
            )
        )
        if self.promotions:
            commits.append(
                lambda: self._must(
                    "record promotions",
                    DiscountActivities.record_promotions,
                    RecordPromotionsInput.model_validate(
                        {
                            "idempotency_key": f"{wid}:discount.record_promotions",
                            "order_id": inp.order_id,
                            "user_id": inp.user_id,
                            "applied": self.promotions,
                        }
                    ),
                    "discount",
                )
            )

        if self.lean:  # nothing here needs another step's result: all at once

            async def confirm_then_notify() -> None:
                await confirm
                await self._notify("order_confirmed")

            await self._together(confirm_then_notify(), *(commit() for commit in commits))
            # "confirmed" only once every step of the confirmation is done: a shopper or a test that
            # sees it finds the stock, the coupon and the cart settled too.
            self.step = "awaiting shipment"
            self._set_status("confirmed")
        else:  # recorded before "lean-checkout": one step after the other
            await confirm
            for commit in commits:
                await commit()
            self._set_status("confirmed")
            await self._notify("order_confirmed")
            self.step = "awaiting shipment"
            set_step("awaiting shipment")
        if inp.start_shipping and (self.lean or workflow.patched("shipping-saga")):
            # The shipping saga buys the label and follows the parcel; it answers shipment_update.
            weight = sum(int(line["weight_grams"]) * int(line["quantity"]) for line in self.lines)
            await workflow.start_child_workflow(
                ShippingWorkflow.run,
                ShippingInput(
                    order_id=inp.order_id,
                    user_id=inp.user_id,
                    email=inp.email,
                    first_name=inp.first_name,
                    shipping_method_id=inp.shipping_method_id,
                    weight_grams=max(1, weight),
                    webhook_url=inp.carrier_webhook_url,
                    reply_to=wid,
                    payment_workflow_id=self.payment_workflow_id(),
                    options=inp.shipping,
                    timings=inp.timings,
                ),
                id=f"shipping-{inp.order_id}",
                task_queue=SAGAS_TASK_QUEUE,
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"shipping of order {self.order_number}",
            )
            self.shipping_started = True

    # == failure and cancellation ================================================================
    async def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, _Stop):
            self.failure_reason, self.failure_type = exc.reason, exc.kind
        else:
            self.failure_reason, self.failure_type = failure_message(exc), failure_type(exc) or "StepFailed"
        cancelled = self.failure_type == "CancelledByShopper"
        self._set_status("compensating")
        workflow.logger.info("checkout failed at %s: %s", self.step, self.failure_reason)
        await self.saga.compensate()
        self._set_status("cancelled" if cancelled else "failed")
        if self.failure_type == "PaymentDeclined":
            await self._notify("payment_failed", critical=False)

    async def _cancel_after_confirmation(self, reason: str) -> None:
        """Cancel a confirmed, not yet shipped order: give the money back, restock, release, cancel."""
        assert self.inp is not None
        inp, wid = self.inp, workflow.info().workflow_id
        self.failure_reason, self.failure_type = reason, "CancelledByShopper"
        self._set_status("compensating")
        await self._payment_command(
            PaymentCommand(kind="refund", request_id="checkout-cancel", reason=reason, reply_to=wid)
        )
        await self._compensate(
            ProductActivities.restock,
            RestockInput.model_validate(
                {
                    "idempotency_key": f"{wid}:product.restock",
                    "lines": [
                        {"variant_id": line["variant_id"], "quantity": line["quantity"]}
                        for line in self.lines
                    ],
                }
            ),
            "product",
        )
        if inp.coupon_code:
            await self._compensate(
                DiscountActivities.release_coupon,
                OrderCouponInput(
                    idempotency_key=f"{wid}:discount.release-after-confirm", order_id=inp.order_id
                ),
                "discount",
            )
        await self._compensate(
            OrderActivities.cancel,
            CancelOrderInput(
                idempotency_key=f"{wid}:order.cancel",
                order_id=inp.order_id,
                user_id=inp.user_id,
                reason=reason,
            ),
            "order",
        )
        self._set_status("cancelled")

    async def _stop_shipping(self) -> None:
        """A cancel while the shipping saga runs: it voids the label and answers ``cancelled``, or
        ``shipped`` when the carrier already has the parcel (then the order is not cancelled)."""
        assert self.inp is not None and self.cancel_request is not None
        try:
            await workflow.get_external_workflow_handle(f"shipping-{self.inp.order_id}").signal(
                ShippingWorkflow.cancel,
                ShippingCancel(reason=self.cancel_request.reason, reply_to=workflow.info().workflow_id),
            )
        except Exception as exc:  # the shipping saga has ended without a word: nothing to void
            workflow.logger.warning("shipping saga not reachable: %s", exc)
            return
        await workflow.wait_condition(lambda: self.shipment is not None)

    def _check_cancel(self) -> None:
        if self.cancel_request is not None:
            raise _Stop(self.cancel_request.reason, "CancelledByShopper")

    async def _void_payment(self) -> None:
        if self.payment is not None and self.payment.status in ("declined", "failed", "voided", "expired"):
            return
        await self._payment_command(
            PaymentCommand(kind="void", request_id="checkout-void", reply_to=workflow.info().workflow_id)
        )

    async def _payment_command(self, command: PaymentCommand) -> None:
        handle = workflow.get_external_workflow_handle(self.payment_workflow_id())
        await handle.signal(PaymentWorkflow.command, command)
        await workflow.wait_condition(
            lambda: (
                command.request_id in self.payment_replies
                or (
                    self.payment is not None
                    and self.payment.status in ("declined", "failed", "voided", "expired")
                )
            )
        )

    # == activity plumbing =======================================================================
    @staticmethod
    async def _together(*steps: Awaitable[Any]) -> list[Any]:
        """Independent steps at once. All of them settle before the first failure is raised, so no
        compensation ever runs beside a step still in flight."""
        results = await asyncio.gather(*steps, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    async def _step(
        self, name: str, method: Callable[..., Awaitable[Any]], arg: BaseModel, queue: str
    ) -> Any:
        """A step before the pivot: a few retries, then the saga fails and compensates."""
        self._check_cancel()
        self.step = name
        if not self.lean:
            set_step(name)
        return await run_step(self.saga, name, method, arg, queue=queue, retry=step_retry(self.saga.timings))

    async def _must(
        self, name: str, method: Callable[..., Awaitable[Any]], arg: BaseModel, queue: str
    ) -> Any:
        """A step after the pivot: retried until it succeeds; a business refusal parks the saga."""
        self.step = name
        if not self.lean:
            set_step(name)
        return await run_until_done(self.saga, name, method, arg, queue=queue)

    async def _compensate(self, method: Callable[..., Awaitable[Any]], arg: BaseModel, queue: str) -> None:
        assert self.inp is not None
        await workflow.execute_activity_method(
            method,
            arg,
            task_queue=queue,
            start_to_close_timeout=timedelta(seconds=self.inp.timings.activity_timeout_s),
            retry_policy=compensation_retry(self.inp.timings),
            summary=f"compensate: {queue}",
        )

    async def _notify(self, template: str, *, critical: bool = True) -> None:
        assert self.inp is not None
        inp = self.inp
        # The variables services/notification/service.py TEMPLATE_VARIABLES lists for these templates.
        context: dict[str, Any] = {
            "first_name": inp.first_name or "there",
            "order_id": str(inp.order_id),
            "order_number": self.order_number or "",
            "total_amount": self.totals.total_amount if self.totals else 0,
            "currency": self.totals.currency if self.totals else "",
            "reason": self.failure_reason or "",
            "items": [
                {"name": line["name"], "quantity": line["quantity"], "line_amount": line["line_amount"]}
                for line in self.lines
            ],
        }
        retry = None if critical else RetryPolicy(maximum_attempts=3)
        await send_email(
            self.saga, template, user_id=inp.user_id, recipient=inp.email, context=context, retry=retry
        )

    # == state shown to shoppers, support and the Web UI ==========================================
    def _set_status(self, status: CheckoutState) -> None:
        self.status = status
        if self.lean:  # one upsert per status: the status, the step it is at and the total
            attributes: list[SearchAttributeUpdate[Any]] = [
                ORDER_STATUS.value_set(status),
                SAGA_STEP.value_set(self.step),
            ]
            if self.totals is not None:
                attributes.append(ORDER_TOTAL.value_set(self.totals.total_amount))
            workflow.upsert_search_attributes(attributes)
        else:
            workflow.upsert_search_attributes([ORDER_STATUS.value_set(status)])
        totals = self.totals
        lines = [f"**Order {self.order_number or self.inp.order_id if self.inp else ''}**: {status}"]
        if totals:
            lines.append(
                f"\n| subtotal | discount | shipping | total |\n|---|---|---|---|\n"
                f"| {totals.subtotal_amount / 100:.2f} | -{totals.discount_amount / 100:.2f} | "
                f"{totals.shipping_amount / 100:.2f} | **{totals.total_amount / 100:.2f} {totals.currency}** |"
            )
        if self.failure_reason:
            lines.append(f"\nReason: {self.failure_reason}")
        if self.saga.log:
            lines.append("\nSteps: " + ", ".join(self.saga.log[-12:]))
        workflow.set_current_details("\n".join(lines))

    def _reserve_input(self, stock_lines: list[dict[str, Any]]) -> ReserveInventoryInput:
        assert self.inp is not None
        return ReserveInventoryInput.model_validate(
            {
                "idempotency_key": f"{workflow.info().workflow_id}:product.reserve",
                "order_id": self.inp.order_id,
                "lines": stock_lines,
                "ttl_seconds": self.inp.reservation_ttl_s,
            }
        )

    def _cart(self) -> uuid.UUID:
        if self.cart_id is None:  # lock timed out before answering: unlock by the user's locked cart
            raise ApplicationError("no cart id known", non_retryable=True)
        return self.cart_id

    def payment_workflow_id(self) -> str:
        assert self.inp is not None
        return f"payment-{self.inp.order_id}"

    @workflow.query
    def query_status(self) -> CheckoutStatus:
        return CheckoutStatus(
            workflow_id=workflow.info().workflow_id,
            order_id=self.inp.order_id if self.inp else uuid.UUID(int=0),
            order_number=self.order_number,
            status=self.status,
            step=self.step,
            failure_reason=self.failure_reason,
            failure_type=self.failure_type,
            totals=self.totals,
            payment_id=self.payment_id,
            payment_status=self.payment.status if self.payment else None,
            next_action_url=self.payment.next_action_url if self.payment else None,
            needs_attention=self.saga.parked,
            log=self.saga.log,
        )

    # == messages ================================================================================
    @workflow.signal
    def payment_update(self, update: PaymentUpdate) -> None:
        self.payment = update
        if update.request_id:
            self.payment_replies.add(update.request_id)
        if update.status == "requires_action" and self.status == "pending_payment":
            self._set_status("awaiting_authentication")

    @workflow.signal
    def shipment_update(self, update: ShipmentUpdate) -> None:
        self.shipment = update

    @workflow.update
    async def cancel(self, request: CancelRequest) -> CancelOutcome:
        self.cancel_request = request
        await workflow.wait_condition(lambda: self.status in TERMINAL)
        accepted = self.status == "cancelled"
        message = "the order was cancelled" if accepted else f"the order is {self.status}"
        return CancelOutcome(accepted=accepted, status=self.status, message=message)

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if self.status in TERMINAL:
            raise ApplicationError(f"the order is already {self.status}", type="OrderNotCancellable")
        if self.shipment is not None or self.cancel_request is not None:
            raise ApplicationError(
                "the order is already shipping or being cancelled", type="OrderNotCancellable"
            )

    @workflow.update
    def resolve(self, decision: Resolution) -> str:
        self.saga.resolve(decision)
        return "resolved"
