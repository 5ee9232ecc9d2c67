"""The checkout and payment sagas end to end: over HTTP against the API, with every worker process,
the real Temporal dev server, the real databases and the PSP sandbox. Each failure branch checks the
database state after compensation."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from temporalio.service import RPCError

from api.routes.orders import checkout_workflow_id
from core.crypto import TokenCipher
from core.db import SessionFactory
from services.discount import service as discount_service
from services.discount.schemas import CouponIn
from services.payment.provider import PspSandboxProvider
from tests.conftest import Stack, record_history
from tests.factories import (
    DECLINED_CARD,
    THREE_DS_CARD,
    Shopper,
    fill_cart,
    make_shopper,
    stocked_variant,
)
from tests.probes import history_text, ledger_rows, mail_with, stock

pytestmark = pytest.mark.timeout(600)
TERMINAL = {"confirmed", "failed", "cancelled", "shipped"}


async def checkout(
    http: httpx.AsyncClient,
    shopper: Shopper,
    method_id: uuid.UUID,
    *,
    key: str | None = None,
    coupon: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {
        "shipping_address_id": str(shopper.address_id),
        "shipping_method_id": str(method_id),
        "payment_method_id": str(shopper.payment_method_id),
    }
    if coupon:
        body["coupon_code"] = coupon
    headers = {**shopper.headers, "Idempotency-Key": key or str(uuid.uuid4())}
    for attempt in range(4):  # the Idempotency-Key makes a retry after a dropped connection safe
        try:
            return await http.post("/v1/checkout", json=body, headers=headers)
        except httpx.TransportError:
            if attempt == 3:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


async def wait_status(
    http: httpx.AsyncClient,
    shopper: Shopper,
    order_id: str,
    wanted: set[str],
    timeout_s: float = 60,
    poll_s: float = 0.3,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await http.get(f"/v1/orders/{order_id}", headers=shopper.headers)
        if response.status_code == 200:
            body = response.json()
            saga = body.get("saga") or {}  # None while the saga query timed out: ask again
            if saga.get("status") in wanted:
                return body
        await asyncio.sleep(poll_s)
    raise AssertionError(f"order {order_id} never reached {wanted}: {body}")


async def cart_status(sessions: dict[str, SessionFactory], user_id: uuid.UUID) -> str:
    async with sessions["cart"]() as s:
        return str(
            (
                await s.execute(
                    text("SELECT status FROM carts WHERE user_id = :u ORDER BY created_at DESC LIMIT 1"),
                    {"u": user_id},
                )
            ).scalar()
        )


async def psp_authorizations(stack: Stack, order_id: str) -> list[Any]:
    async with PspSandboxProvider(stack.settings.psp_url) as psp:
        return await psp.list_authorizations(reference=order_id)


async def psp_token_of(stack: Stack, sessions: dict[str, SessionFactory], shopper: Shopper) -> str:
    async with sessions["user"]() as s:
        stored = (
            await s.execute(
                text("SELECT psp_token_encrypted FROM payment_methods WHERE id = :m"),
                {"m": shopper.payment_method_id},
            )
        ).scalar_one()
    token = TokenCipher.from_settings(stack.settings).decrypt(stored)
    assert token.startswith("tok_")
    return token


async def new_coupon(sessions: dict[str, SessionFactory], **limits: Any) -> str:
    code = f"T{uuid.uuid4().hex[:8].upper()}"
    async with sessions["discount"]() as s, s.begin():
        await discount_service.create_coupon(
            s, CouponIn.model_validate({"code": code, "type": "percentage", "value": 10, **limits})
        )
    return code


async def coupon_usage(sessions: dict[str, SessionFactory], code: str) -> list[str]:
    async with sessions["discount"]() as s:
        rows = await s.execute(
            text(
                "SELECT u.status FROM coupon_usage u JOIN coupons c ON c.id = u.coupon_id WHERE c.code = :c"
            ),
            {"c": code},
        )
        return [r[0] for r in rows]


# -- happy path ----------------------------------------------------------------------------------
async def test_happy_path_confirms_the_order(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    shopper = await make_shopper(sessions, stack.settings)
    variant = await stocked_variant(sessions, on_hand=5, price_amount=2500)
    await fill_cart(sessions, shopper.user_id, variant, quantity=2)
    coupon = await new_coupon(sessions)
    async with stack.http() as http:
        started = await checkout(http, shopper, methods["US:standard"], coupon=coupon)
        assert started.status_code == 202, started.text
        order_id = started.json()["order_id"]
        assert started.json()["status_url"] == f"/v1/orders/{order_id}"
        body = await wait_status(http, shopper, order_id, TERMINAL)
    saga = body["saga"]
    assert saga["status"] == "confirmed", saga
    assert body["order"]["status"] == "confirmed"
    totals = saga["totals"]
    assert totals["subtotal_amount"] == 5000 and totals["discount_amount"] == 500
    assert totals["total_amount"] == 5000 - 500 + totals["shipping_amount"]
    assert body["order"]["total_amount"] == totals["total_amount"]
    assert await stock(sessions, variant) == (3, 0)  # committed: on hand down, nothing reserved
    assert await cart_status(sessions, shopper.user_id) == "converted"
    assert await coupon_usage(sessions, coupon) == ["committed"]
    auths = await psp_authorizations(stack, order_id)
    assert [a.status for a in auths] == ["authorized"] and auths[0].amount == totals["total_amount"]
    assert await ledger_rows(sessions, order_id) == [("authorize", "succeeded", totals["total_amount"])]
    mail = await mail_with(stack, shopper.email, f"Order {body['order']['order_number']} confirmed")
    assert "Test" in mail["text"] and "$" in mail["text"]  # first name and the rendered total
    # Support staff read histories in the Web UI: the card's provider token is in them only encrypted.
    token = await psp_token_of(stack, sessions, shopper)
    for workflow_id in (saga["workflow_id"], f"payment-{order_id}"):
        payloads = await history_text(stack, workflow_id)
        assert token not in payloads and "psp_token_encrypted" in payloads, workflow_id
    await record_history(stack.client, saga["workflow_id"], "checkout", "happy_path")
    await record_history(stack.client, f"payment-{order_id}", "payment", "authorized")


# -- failure branches, each with the state after compensation --------------------------------------
async def test_out_of_stock_fails_and_unlocks_the_cart(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    shopper = await make_shopper(sessions, stack.settings)
    variant = await stocked_variant(sessions, on_hand=1)
    await fill_cart(sessions, shopper.user_id, variant, quantity=2)
    coupon = await new_coupon(sessions)
    async with stack.http() as http:
        key = str(uuid.uuid4())
        order_id = (await checkout(http, shopper, methods["US:standard"], coupon=coupon, key=key)).json()[
            "order_id"
        ]
        body = await wait_status(http, shopper, order_id, TERMINAL)
        # the same key after the saga has closed: the same (failed) order, not a new attempt
        retried = await checkout(http, shopper, methods["US:standard"], coupon=coupon, key=key)
        assert retried.status_code == 202 and retried.json()["order_id"] == order_id
    saga = body["saga"]
    assert saga["status"] == "failed" and saga["failure_type"] == "OutOfStock", saga
    assert "stock" in saga["failure_reason"].lower()
    assert await stock(sessions, variant) == (1, 0)
    # stock is held (and found short) before the coupon is reserved: no coupon slot was ever taken
    assert await coupon_usage(sessions, coupon) == []
    assert await cart_status(sessions, shopper.user_id) == "active"  # usable again
    assert await psp_authorizations(stack, order_id) == []
    await record_history(stack.client, saga["workflow_id"], "checkout", "out_of_stock")


async def test_exhausted_coupon_fails_and_gives_the_stock_back(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    coupon = await new_coupon(sessions, usage_limit_total=1)
    variant = await stocked_variant(sessions, on_hand=10)
    first = await make_shopper(sessions, stack.settings)
    second = await make_shopper(sessions, stack.settings)
    async with stack.http() as http:
        for shopper in (first, second):
            await fill_cart(sessions, shopper.user_id, variant)
        one = (await checkout(http, first, methods["US:standard"], coupon=coupon)).json()["order_id"]
        assert (await wait_status(http, first, one, TERMINAL))["saga"]["status"] == "confirmed"
        two = (await checkout(http, second, methods["US:standard"], coupon=coupon)).json()["order_id"]
        saga = (await wait_status(http, second, two, TERMINAL))["saga"]
    assert saga["status"] == "failed" and saga["failure_type"] == "CouponExhausted", saga
    assert await stock(sessions, variant) == (9, 0)  # the second order's held stock was released
    assert await coupon_usage(sessions, coupon) == ["committed"]
    assert await cart_status(sessions, second.user_id) == "active"
    await record_history(stack.client, saga["workflow_id"], "checkout", "coupon_exhausted")


async def test_declined_card_compensates_everything(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    shopper = await make_shopper(sessions, stack.settings, card=DECLINED_CARD)
    variant = await stocked_variant(sessions, on_hand=4)
    await fill_cart(sessions, shopper.user_id, variant, quantity=3)
    coupon = await new_coupon(sessions)
    async with stack.http() as http:
        order_id = (await checkout(http, shopper, methods["US:standard"], coupon=coupon)).json()["order_id"]
        body = await wait_status(http, shopper, order_id, TERMINAL)
    saga = body["saga"]
    assert saga["status"] == "failed" and saga["failure_type"] == "PaymentDeclined", saga
    assert "declined" in saga["failure_reason"]
    assert body["order"]["status"] == "failed"
    assert "declined" in (body["order"]["failure_reason"] or "")
    assert await stock(sessions, variant) == (4, 0)
    assert await coupon_usage(sessions, coupon) == ["released"]
    assert await cart_status(sessions, shopper.user_id) == "active"
    assert [a.status for a in await psp_authorizations(stack, order_id)] == ["declined"]
    assert all(row[0] == "authorize" and row[1] == "failed" for row in await ledger_rows(sessions, order_id))
    await record_history(stack.client, saga["workflow_id"], "checkout", "card_declined")
    await record_history(stack.client, f"payment-{order_id}", "payment", "declined")


async def test_address_not_served_by_the_method(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    shopper = await make_shopper(sessions, stack.settings, country="DE", postal_code="10115")
    variant = await stocked_variant(sessions, on_hand=2)
    await fill_cart(sessions, shopper.user_id, variant)
    async with stack.http() as http:
        order_id = (await checkout(http, shopper, methods["US:standard"])).json()["order_id"]
        saga = (await wait_status(http, shopper, order_id, TERMINAL))["saga"]
    assert saga["status"] == "failed" and saga["failure_type"] == "AddressNotServed", saga
    assert await stock(sessions, variant) == (2, 0)
    assert await cart_status(sessions, shopper.user_id) == "active"
    await record_history(stack.client, saga["workflow_id"], "checkout", "address_not_served")


async def test_address_or_card_not_usable_is_refused_before_any_saga(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    """The API reads the address and card when it accepts a checkout: another shopper's address, an
    unknown card or an expired one are a 422 on that field, and no saga starts (nothing is locked)."""
    shopper = await make_shopper(sessions, stack.settings)
    other = await make_shopper(sessions, stack.settings)
    variant = await stocked_variant(sessions, on_hand=1)
    await fill_cart(sessions, shopper.user_id, variant)
    async with sessions["user"]() as s, s.begin():
        await s.execute(
            text("UPDATE payment_methods SET exp_year = 2020 WHERE id = :m"),
            {"m": other.payment_method_id},
        )
    good = {
        "shipping_address_id": str(shopper.address_id),
        "shipping_method_id": str(methods["US:standard"]),
        "payment_method_id": str(shopper.payment_method_id),
    }
    cases = [
        ("shipping_address_id", str(other.address_id), "AddressNotFound"),
        ("payment_method_id", str(uuid.uuid4()), "PaymentMethodNotFound"),
        ("payment_method_id", str(other.payment_method_id), "PaymentMethodNotFound"),
    ]
    async with stack.http() as http:
        for field, value, error_type in cases:
            key = str(uuid.uuid4())
            response = await http.post(
                "/v1/checkout",
                json={**good, field: value},
                headers={**shopper.headers, "Idempotency-Key": key},
            )
            assert response.status_code == 422, response.text
            assert response.headers["content-type"] == "application/problem+json"
            [error] = response.json()["errors"]
            assert (error["loc"], error["type"]) == (["body", field], error_type) and error["msg"]
            with pytest.raises(RPCError):  # no workflow under this key
                await stack.client.get_workflow_handle(checkout_workflow_id(shopper.user_id, key)).describe()
        expired = await checkout(http, other, methods["US:standard"])  # the other's card, by its owner
        assert expired.status_code == 422, expired.text
        assert expired.json()["errors"][0]["type"] == "PaymentMethodExpired"
        assert expired.json()["errors"][0]["loc"] == ["body", "payment_method_id"]
    assert await cart_status(sessions, shopper.user_id) == "active"
    assert await stock(sessions, variant) == (1, 0)


# -- idempotency, cancel, extra authentication step ---------------------------------------------------
async def test_retried_post_returns_the_same_order(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    shopper = await make_shopper(sessions, stack.settings)
    variant = await stocked_variant(sessions, on_hand=3)
    await fill_cart(sessions, shopper.user_id, variant)
    key = str(uuid.uuid4())
    async with stack.http() as http:
        responses = await asyncio.gather(
            *(checkout(http, shopper, methods["US:standard"], key=key) for _ in range(3))
        )
        assert {r.status_code for r in responses} == {202}
        assert len({r.json()["order_id"] for r in responses}) == 1
        order_id = responses[0].json()["order_id"]
        await wait_status(http, shopper, order_id, TERMINAL)
        again = await checkout(http, shopper, methods["US:standard"], key=key)
        assert again.json()["order_id"] == order_id  # after completion too
        other = await checkout(http, shopper, methods["US:express"], key=key)
        assert other.status_code == 422 and other.headers["content-type"] == "application/problem+json"
    assert await stock(sessions, variant) == (2, 0)  # one order only
    async with sessions["order"]() as s:
        count = (
            await s.execute(
                select(func.count())
                .select_from(text("orders"))
                .where(text("id = :o"))
                .params(o=uuid.UUID(order_id))
            )
        ).scalar()
    assert count == 1


async def test_cancel_after_confirmation_voids_and_restocks(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    shopper = await make_shopper(sessions, stack.settings)
    variant = await stocked_variant(sessions, on_hand=5)
    await fill_cart(sessions, shopper.user_id, variant, quantity=2)
    async with stack.http() as http:
        order_id = (await checkout(http, shopper, methods["US:standard"])).json()["order_id"]
        await wait_status(http, shopper, order_id, {"confirmed"})
        assert await stock(sessions, variant) == (3, 0)
        cancelled = await http.post(
            f"/v1/orders/{order_id}/cancel", json={"reason": "changed my mind"}, headers=shopper.headers
        )
        assert cancelled.status_code in (200, 202), cancelled.text
        body = await wait_status(http, shopper, order_id, {"cancelled"})
        again = await http.post(f"/v1/orders/{order_id}/cancel", json={}, headers=shopper.headers)
        assert again.status_code == 409
        stranger = await make_shopper(sessions, stack.settings)
        assert (
            await http.post(f"/v1/orders/{order_id}/cancel", json={}, headers=stranger.headers)
        ).status_code == 404
    assert body["order"]["status"] == "cancelled"
    assert await stock(sessions, variant) == (5, 0)
    assert [a.status for a in await psp_authorizations(stack, order_id)] == ["voided"]
    assert [r[0] for r in await ledger_rows(sessions, order_id)] == ["authorize", "void"]
    await record_history(stack.client, body["saga"]["workflow_id"], "checkout", "cancel_after_confirmation")
    await record_history(stack.client, f"payment-{order_id}", "payment", "voided_on_cancel")


@pytest.mark.parametrize("succeed", [True, False], ids=["authenticated", "authentication_failed"])
async def test_extra_authentication_step_waits_for_the_webhook(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID], succeed: bool
) -> None:
    shopper = await make_shopper(sessions, stack.settings, card=THREE_DS_CARD)
    variant = await stocked_variant(sessions, on_hand=2)
    await fill_cart(sessions, shopper.user_id, variant)
    async with stack.http() as http:
        order_id = (await checkout(http, shopper, methods["US:standard"])).json()["order_id"]
        waiting = await wait_status(http, shopper, order_id, {"awaiting_authentication"})
        assert waiting["saga"]["next_action_url"]
        (auth,) = await psp_authorizations(stack, order_id)
        async with PspSandboxProvider(stack.settings.psp_url) as psp:
            await psp.simulate_customer_action(auth.id, succeed=succeed)  # PSP -> signed webhook -> API
        body = await wait_status(http, shopper, order_id, TERMINAL)
    if succeed:
        assert body["saga"]["status"] == "confirmed", body
        assert await stock(sessions, variant) == (1, 0)
    else:
        assert body["saga"]["status"] == "failed" and body["saga"]["failure_type"] == "PaymentDeclined", body
        assert await stock(sessions, variant) == (2, 0)
    scenario = "authentication_" + ("succeeded" if succeed else "failed")
    await record_history(stack.client, body["saga"]["workflow_id"], "checkout", scenario)
    await record_history(stack.client, f"payment-{order_id}", "payment", scenario)


async def test_webhook_signature_and_duplicates(stack: Stack) -> None:
    import json as _json

    from sandboxes.signing import sign

    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "authorization.succeeded",
        "data": {"id": "auth_unknown"},
    }
    raw = _json.dumps(event).encode()
    secret = stack.settings.psp_webhook_secret
    async with stack.http() as http:
        bad = await http.post(
            "/v1/webhooks/payments",
            content=raw,
            headers={"Psp-Signature": sign("wrong-secret", raw), "Content-Type": "application/json"},
        )
        assert bad.status_code == 401 and bad.headers["content-type"] == "application/problem+json"
        missing = await http.post("/v1/webhooks/payments", content=raw)
        assert missing.status_code == 401
        headers = {"Psp-Signature": sign(secret, raw), "Content-Type": "application/json"}
        first = await http.post("/v1/webhooks/payments", content=raw, headers=headers)
        second = await http.post("/v1/webhooks/payments", content=raw, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["duplicate"] is False and second.json()["duplicate"] is True


# -- crash: the payment worker dies after the provider accepted -------------------------------------
async def test_payment_worker_killed_after_provider_accepted(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    shopper = await make_shopper(sessions, stack.settings)
    variant = await stocked_variant(sessions, on_hand=2)
    await fill_cart(sessions, shopper.user_id, variant)
    async with PspSandboxProvider(stack.settings.psp_url) as psp:
        await psp.inject_fault("authorize", "accept_then_delay", delay_ms=4000)
        try:
            async with stack.http() as http:
                order_id = (await checkout(http, shopper, methods["US:standard"])).json()["order_id"]
                deadline = time.monotonic() + 30
                while not await psp.list_authorizations(reference=order_id):  # the provider has accepted ...
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                stack.supervisor.kill("worker-payment")  # ... and the activity never reports
                stack.supervisor.restart("worker-payment")
                body = await wait_status(http, shopper, order_id, TERMINAL, timeout_s=90)
        finally:
            await psp.clear_faults()
        auths = await psp.list_authorizations(reference=order_id)
    assert body["saga"]["status"] == "confirmed", body
    assert len(auths) == 1 and auths[0].status == "authorized"
    assert [r[0] for r in await ledger_rows(sessions, order_id)] == ["authorize"]


# -- concurrency: many shoppers race for the last units --------------------------------------------
@pytest.mark.timeout(900)
async def test_200_checkouts_race_for_20_units(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    variant = await stocked_variant(sessions, on_hand=20)
    shoppers = [await make_shopper(sessions, stack.settings) for _ in range(200)]
    for shopper in shoppers:
        await fill_cart(sessions, shopper.user_id, variant)
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60, limits=limits) as http:
        started = await asyncio.gather(*(checkout(http, s, methods["US:standard"]) for s in shoppers))
        assert {r.status_code for r in started} == {202}
        results = await asyncio.gather(
            *(
                wait_status(http, s, r.json()["order_id"], TERMINAL, timeout_s=600, poll_s=2)
                for s, r in zip(shoppers, started, strict=True)
            )
        )
    statuses = [r["saga"]["status"] for r in results]
    assert statuses.count("confirmed") == 20, statuses
    assert statuses.count("failed") == 180
    assert all(r["saga"]["failure_type"] == "OutOfStock" for r in results if r["saga"]["status"] == "failed")
    assert await stock(sessions, variant) == (0, 0)


async def test_automatic_promotion_is_applied_and_recorded(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    """Added behind workflow.patched("automatic-promotions"): new checkouts evaluate promotions,
    the stored histories recorded before the change still replay (tests/workflows/test_replay.py)."""
    from services.discount.schemas import PromotionIn

    shopper = await make_shopper(sessions, stack.settings)
    variant = await stocked_variant(sessions, on_hand=3, price_amount=4000)
    await fill_cart(sessions, shopper.user_id, variant)
    async with sessions["discount"]() as s, s.begin():
        promotion_id = await discount_service.create_promotion(
            s,
            PromotionIn.model_validate(
                {
                    "name": "20% off this product",
                    "type": "percentage",
                    "value": 20,
                    "rules": [{"rule_type": "product", "params": {"product_ids": [str(variant.product_id)]}}],
                }
            ),
        )
    async with stack.http() as http:
        order_id = (await checkout(http, shopper, methods["US:standard"])).json()["order_id"]
        body = await wait_status(http, shopper, order_id, TERMINAL)
    assert body["saga"]["status"] == "confirmed", body
    assert body["order"]["discount_amount"] == 800
    async with sessions["discount"]() as s:
        used = (
            await s.execute(
                text("SELECT discount_amount FROM promotion_usage WHERE promotion_id = :p AND order_id = :o"),
                {"p": promotion_id, "o": uuid.UUID(order_id)},
            )
        ).all()
    assert [r[0] for r in used] == [800]
    await record_history(stack.client, body["saga"]["workflow_id"], "checkout", "with_promotion")
