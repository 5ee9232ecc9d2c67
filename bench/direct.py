"""Direct mode: the work of one checkout without Temporal, as the floor the database work sets.

The same activity classes the service workers host (built by each ``activities/<svc>.py``'s own
``build()``, so with the same session factories, provider clients and settings), called in the
benchmark process one after another in the checkout saga's order, with the inputs the saga builds
(``workflows/checkout.py``, ``workflows/payment.py``) and an idempotency key per writing step:

    user.get_checkout_details -> cart.lock -> product.price_and_reserve -> discount.evaluate_promotions
    -> [discount.reserve_coupon] -> shipping.quote -> order.create
    -> payment.authorize (PSP sandbox over HTTP) -> order.confirm -> product.commit_inventory
    -> [discount.commit_coupon] -> cart.convert -> [discount.record_promotions]
    -> notification.send (SMTP sink)

The saga runs some of these at the same time (``workflows/checkout.py``); here they run strictly one
after another, the slowest way the same work can be done. In the saga mode the first read (address and
card) is done by the API when it accepts the checkout; here it stays the first step.

No compensation runs here: any refusal is an error of the measurement (the saga mode counts a
failed or cancelled checkout as an error too). Each service gets its own engine with the pool the
workers use (``DB_POOL_SIZE`` / ``DB_MAX_OVERFLOW``), so the ratio saga / direct isolates what the
orchestration costs: Temporal, the workers' polling, serialisation and the API.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from bench.harness import Mode, ModeContext
from bench.platform import BenchShopper, Platform, for_run

DIRECT_SERVICES = ("user", "cart", "product", "discount", "shipping", "order", "payment", "notification")


def add_arguments(group: Any) -> None:
    group.add_argument(
        "--coupon",
        default=None,
        help="coupon code every checkout uses (saga and direct; default none)",
    )


def build_activities(settings: Any, sessions: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    """Every activity of the checkout's services by its registered name (``cart.lock`` ...), built
    exactly as ``worker.py <svc>`` builds them."""
    import importlib

    from core.registry import service

    acts: dict[str, Callable[..., Any]] = {}
    for name in DIRECT_SERVICES:
        module = importlib.import_module(f"activities.{service(name).package}")
        for fn in module.build(sessions[name], settings):
            acts[fn.__temporal_activity_definition.name] = fn
    return acts


class DirectCheckout:
    """One checkout, step by step, as the saga runs it up to the confirmation email."""

    def __init__(self, settings: Any, acts: dict[str, Callable[..., Any]], *, coupon: str | None) -> None:
        self.settings = settings
        self.acts = acts
        self.coupon = coupon
        self.webhook_base = settings.webhook_base_url

    async def run(self, shopper: BenchShopper, shipping_method_id: uuid.UUID, workflow_id: str) -> str:
        """Returns the order number; raises on any refusal."""
        from activities.cart import ConvertCartInput, LockCartInput
        from activities.discount import (
            OrderCouponInput,
            RecordPromotionsInput,
            ReserveCouponInput,
        )
        from activities.notification import SendInput
        from activities.order import ConfirmOrderInput
        from activities.payment import AuthorizeInput
        from activities.product import CommitInventoryInput, ReserveInventoryInput
        from activities.user import GetCheckoutDetailsInput
        from workflows.checkout import order_input, promotions_input, quote_input
        from workflows.messages import Totals

        a, s, wid = self.acts, self.settings, workflow_id
        order_id, user_id = uuid.uuid4(), shopper.user_id

        details = await a["user.get_checkout_details"](
            GetCheckoutDetailsInput(
                user_id=user_id, address_id=shopper.address_id, payment_method_id=shopper.payment_method_id
            )
        )
        cart = await a["cart.lock"](
            LockCartInput(idempotency_key=f"{wid}:cart.lock", user_id=user_id, workflow_id=wid)
        )
        stock_lines = [{"variant_id": i.variant_id, "quantity": i.quantity} for i in cart.items]
        priced = await a["product.price_and_reserve"](
            ReserveInventoryInput.model_validate(
                {
                    "idempotency_key": f"{wid}:product.reserve",
                    "order_id": order_id,
                    "lines": stock_lines,
                    "ttl_seconds": s.reservation_ttl_s,
                }
            )
        )
        lines = [line.model_dump() for line in priced.lines]

        promotions = await a["discount.evaluate_promotions"](promotions_input(priced))
        promotion_amount = min(promotions.discount_amount, priced.subtotal_amount)
        applied = [p.model_dump(mode="json") for p in promotions.applied]

        discount_amount, free_shipping = promotion_amount, False
        if self.coupon:
            coupon = await a["discount.reserve_coupon"](
                ReserveCouponInput(
                    idempotency_key=f"{wid}:discount.reserve",
                    code=self.coupon,
                    user_id=user_id,
                    order_id=order_id,
                    subtotal_amount=priced.subtotal_amount - promotion_amount,
                    currency=priced.currency,
                )
            )
            discount_amount, free_shipping = promotion_amount + coupon.discount_amount, coupon.free_shipping

        quote = await a["shipping.quote"](quote_input(details, shipping_method_id, priced, discount_amount))
        shipping_amount = 0 if free_shipping else quote.amount
        total = priced.subtotal_amount - discount_amount + shipping_amount
        totals = Totals(
            currency=priced.currency,
            subtotal_amount=priced.subtotal_amount,
            discount_amount=discount_amount,
            shipping_amount=shipping_amount,
            tax_amount=0,
            total_amount=total,
        )
        created = await a["order.create"](
            order_input(
                order_id=order_id,
                user_id=user_id,
                cart_id=cart.cart_id,
                workflow_id=wid,
                priced=priced,
                totals=totals,
                coupon_code=self.coupon,
                details=details,
            )
        )

        payment_id = uuid.uuid4()
        authorized = await a["payment.authorize"](
            AuthorizeInput(
                idempotency_key=f"payment-{order_id}:authorize",
                payment_id=payment_id,
                order_id=order_id,
                user_id=user_id,
                amount=total,
                currency=priced.currency,
                psp_token=details.payment_method.psp_token,
                psp_token_encrypted=details.payment_method.psp_token_encrypted,
                webhook_url=f"{self.webhook_base}/v1/webhooks/payments",
            )
        )
        if authorized.status != "authorized":
            raise RuntimeError(f"payment {authorized.status} ({authorized.decline_code})")

        await a["order.confirm"](
            ConfirmOrderInput(
                idempotency_key=f"{wid}:order.confirm",
                order_id=order_id,
                user_id=user_id,
                payment_id=payment_id,
            )
        )
        await a["product.commit_inventory"](
            CommitInventoryInput(idempotency_key=f"{wid}:product.commit", order_id=order_id)
        )
        if self.coupon:
            await a["discount.commit_coupon"](
                OrderCouponInput(idempotency_key=f"{wid}:discount.commit", order_id=order_id)
            )
        await a["cart.convert"](
            ConvertCartInput(
                idempotency_key=f"{wid}:cart.convert",
                cart_id=cart.cart_id,
                workflow_id=wid,
                order_id=order_id,
            )
        )
        if applied:
            await a["discount.record_promotions"](
                RecordPromotionsInput.model_validate(
                    {
                        "idempotency_key": f"{wid}:discount.record_promotions",
                        "order_id": order_id,
                        "user_id": user_id,
                        "applied": applied,
                    }
                )
            )
        await a["notification.send"](
            SendInput.model_validate(
                {
                    "idempotency_key": f"{wid}:notify:order_confirmed",
                    "user_id": user_id,
                    "recipient": shopper.email,
                    "event_type": "order_confirmed",
                    "template_key": "order_confirmed",
                    "context": {
                        "first_name": shopper.first_name or "there",
                        "order_id": str(order_id),
                        "order_number": created.order_number,
                        "total_amount": total,
                        "currency": priced.currency,
                        "reason": "",
                        "items": [
                            {"name": x["name"], "quantity": x["quantity"], "line_amount": x["line_amount"]}
                            for x in lines
                        ],
                    },
                }
            )
        )
        return str(created.order_number)


@contextlib.asynccontextmanager
async def direct_mode(ctx: ModeContext) -> AsyncIterator[Mode]:
    """Mode factory (bench.harness.ModeFactory): the activity classes in this process."""
    from core.db import create_engine, session_factory

    platform: Platform = for_run(ctx.run_id)
    settings = platform.settings
    engines = {name: create_engine(settings, name) for name in DIRECT_SERVICES}
    concurrency = int(getattr(ctx.options, "concurrency", 1))
    filler = platform.cart_filler(concurrency, seed=11)
    try:
        acts = build_activities(settings, {name: session_factory(e) for name, e in engines.items()})
        checkout = DirectCheckout(settings, acts, coupon=getattr(ctx.options, "coupon", None))
        assert platform.shipping_method_id is not None
        method = platform.shipping_method_id
        await filler.prefill()
        sequence = itertools.count()
        prefix = f"direct-{ctx.run_id}"

        async def operation(user: int) -> None:
            shopper = await filler.take(user)
            try:
                await checkout.run(shopper, method, f"{prefix}-u{user}-{next(sequence)}")
            finally:
                filler.refill(shopper)

        config: dict[str, Any] = {
            "steps": "user.get_checkout_details, cart.lock, product.price_and_reserve, "
            "discount.evaluate_promotions, [discount.reserve_coupon], shipping.quote, order.create, "
            "payment.authorize, order.confirm, product.commit_inventory, [discount.commit_coupon], "
            "cart.convert, [discount.record_promotions], notification.send",
            "where": "the activity classes in the benchmark process (no Temporal, no API)",
            "db_pool_per_service": f"{settings.db_pool_size} + {settings.db_max_overflow} overflow",
            "coupon": getattr(ctx.options, "coupon", None),
            "postgres_port": settings.postgres_port,
        }
        mode = Mode(
            operation=operation,
            cpu_sources=platform.cpu_sources(workers=False),
            workflow_ids=None,
            config=config,
        )
        yield mode
        config.update(filler.stats())
    finally:
        await filler.close()
        for engine in engines.values():
            await engine.dispose()
