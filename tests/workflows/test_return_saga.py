"""The return saga end to end over the API: delivered orders (checkout + carrier sandbox), return
requests, support decisions and inspections, the return label's carrier events, refunds through the
payment saga and the PSP sandbox. Checked: auto approval, support approval after escalation,
rejection, RMA expiry, partial returns with discount shares and shipping, and a payment worker killed
mid-refund without a second refund."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from core.db import SessionFactory
from services.discount import service as discount_service
from services.discount.schemas import CouponIn
from services.payment.provider import PspSandboxProvider
from services.shipping.carrier import CarrierSandboxClient
from tests.conftest import Stack, record_history
from tests.factories import Shopper, make_shopper, stocked_variant
from tests.probes import eventually, ledger_rows, mail_with, stock
from tests.workflows.test_shipping_saga import advance, deliver, place_order
from workflows.shipping import return_shipment_id

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
async def support(stack: Stack, sessions: dict[str, SessionFactory]) -> Shopper:
    return await make_shopper(sessions, stack.settings, roles=("support",))


async def delivered_order(
    stack: Stack,
    http: httpx.AsyncClient,
    sessions: dict[str, SessionFactory],
    methods: dict[str, uuid.UUID],
    *,
    quantity: int,
    price_amount: int = 2500,
    coupon: str | None = None,
) -> tuple[Shopper, Any, dict[str, Any]]:
    variant = await stocked_variant(sessions, on_hand=10, price_amount=price_amount)
    shopper, _, order_id = await place_order(
        stack, http, sessions, methods["US:standard"], variant=variant, quantity=quantity, coupon=coupon
    )
    order = (await deliver(stack, http, shopper, order_id))["order"]
    return shopper, variant, order


async def ask(
    http: httpx.AsyncClient, shopper: Shopper, order: dict[str, Any], quantity: int, reason: str
) -> httpx.Response:
    return await http.post(
        f"/v1/orders/{order['id']}/returns",
        json={"items": [{"order_item_id": order["items"][0]["id"], "quantity": quantity, "reason": reason}]},
        headers=shopper.headers,
    )


async def return_in(
    http: httpx.AsyncClient, shopper: Shopper, return_id: str, wanted: set[str], timeout_s: float = 30
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await http.get(f"/v1/returns/{return_id}", headers=shopper.headers)
        body: dict[str, Any] = response.json()
        saga = body.get("saga") or {}
        return body if response.status_code == 200 and saga.get("status") in wanted else None

    result: dict[str, Any] = await eventually(check, f"return {return_id} in {wanted}", timeout_s)
    return result


async def inspect(
    http: httpx.AsyncClient,
    support: Shopper,
    return_id: str,
    order: dict[str, Any],
    accepted: int,
    condition: str,
) -> httpx.Response:
    return await http.post(
        f"/v1/support/returns/{return_id}/inspection",
        json={
            "items": [
                {
                    "order_item_id": order["items"][0]["id"],
                    "quantity_accepted": accepted,
                    "condition": condition,
                }
            ]
        },
        headers=support.headers,
    )


async def psp_refunds(stack: Stack, order_id: str) -> list[Any]:
    async with PspSandboxProvider(stack.settings.psp_url) as psp:
        (auth,) = await psp.list_authorizations(reference=order_id)
    return list(auth.refunds)


async def return_rows(sessions: dict[str, SessionFactory], return_id: str) -> dict[str, Any]:
    async with sessions["return"]() as s:
        history = (
            await s.execute(
                text(
                    "SELECT to_status FROM return_status_history WHERE return_request_id = :r ORDER BY created_at, id"
                ),
                {"r": uuid.UUID(return_id)},
            )
        ).all()
        refunds = (
            await s.execute(
                text("SELECT amount, status FROM refunds WHERE return_request_id = :r"),
                {"r": uuid.UUID(return_id)},
            )
        ).all()
    return {"history": [h[0] for h in history], "refunds": [(r[0], r[1]) for r in refunds]}


async def order_of(http: httpx.AsyncClient, shopper: Shopper, order_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await http.get(f"/v1/orders/{order_id}", headers=shopper.headers)).json()
    return body


# -- automatic approval, carrier events, inspection, refund ---------------------------------------
async def test_auto_approved_return_is_refunded_restocked_and_recorded(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID], support: Shopper
) -> None:
    async with stack.http() as http:
        shopper, variant, order = await delivered_order(stack, http, sessions, methods, quantity=1)
        assert await stock(sessions, variant) == (9, 0)
        stranger = await make_shopper(sessions, stack.settings)
        assert (await ask(http, stranger, order, 1, "defective")).status_code == 404
        too_many = await ask(http, shopper, order, 2, "defective")
        assert too_many.status_code == 409 and too_many.json()["type"] == "/problems/quantity-not-returnable"

        asked = await ask(http, shopper, order, 1, "defective")
        assert asked.status_code == 202, asked.text
        accepted = asked.json()
        assert accepted["status"] == "approved" and accepted["auto_approved"] is True
        assert accepted["requested_amount"] == 2500 and accepted["rma_number"].startswith("RMA-")
        return_id = accepted["return_id"]
        assert accepted["status_url"] == f"/v1/returns/{return_id}"
        assert (await http.get(f"/v1/returns/{return_id}", headers=stranger.headers)).status_code == 404

        waiting = await return_in(http, shopper, return_id, {"awaiting_parcel"})
        tracking = waiting["saga"]["tracking_number"]
        assert tracking and waiting["request"]["authorization"]["label_tracking_number"] == tracking
        assert waiting["request"]["status"] == "awaiting_parcel"
        approved_mail = await mail_with(stack, shopper.email, "is approved")
        assert accepted["rma_number"] in approved_mail["text"]

        for _ in range(4):  # the return parcel travels to the warehouse
            await advance(stack, tracking)
        await return_in(http, shopper, return_id, {"received"})
        inspected = await inspect(http, support, return_id, order, 1, "opened")
        assert inspected.status_code == 200, inspected.text
        refund = order["total_amount"]  # everything back for a seller fault: items and shipping
        assert inspected.json()["refund_amount"] == refund
        done = await return_in(http, shopper, return_id, {"refunded"})
        assert done["request"]["status"] == "refunded" and done["request"]["refund_amount"] == refund
        await mail_with(stack, shopper.email, "refund of")
        final = await order_of(http, shopper, order["id"])
    assert final["order"]["status"] == "returned"
    assert final["order"]["items"][0]["returned_quantity"] == 1
    assert await stock(sessions, variant) == (10, 0)
    assert [r.amount for r in await psp_refunds(stack, order["id"])] == [refund]
    assert [r[0] for r in await ledger_rows(sessions, order["id"])] == ["authorize", "capture", "refund"]
    rows = await return_rows(sessions, return_id)
    assert rows["history"] == [
        "requested",
        "approved",
        "awaiting_parcel",
        "received",
        "inspected",
        "refunded",
    ]
    assert rows["refunds"] == [(refund, "succeeded")]
    await record_history(stack.client, f"return-{return_id}", "return", "auto_approved")


# -- support decides ----------------------------------------------------------------------------------
async def test_support_approval_after_escalation(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID], support: Shopper
) -> None:
    async with stack.http() as http:
        shopper, variant, order = await delivered_order(stack, http, sessions, methods, quantity=2)
        asked = await ask(http, shopper, order, 2, "changed_mind")
        assert asked.status_code == 202 and asked.json()["status"] == "awaiting_decision", asked.text
        return_id = asked.json()["return_id"]
        decision_url = f"/v1/support/returns/{return_id}/decision"
        assert (
            await http.post(decision_url, json={"approve": True}, headers=shopper.headers)
        ).status_code == 403
        assert (
            await http.post(decision_url, json={"approve": True, "role": "x"}, headers=support.headers)
        ).status_code == 422
        # nobody decides within the timeout (seconds in tests): the return is escalated
        escalated = await eventually(
            lambda: _saga_attention(http, support, return_id), "the escalation of the undecided return"
        )
        assert "decision" in escalated["saga"]["needs_attention"]
        alert = await mail_with(stack, stack.settings.support_alert_email, f"return-{return_id}")
        assert f"POST /v1/support/returns/{return_id}/decision" in alert["text"], alert["text"]
        decided = await http.post(
            decision_url, json={"approve": True, "note": "goodwill"}, headers=support.headers
        )
        assert decided.status_code == 200 and decided.json()["status"] == "approved", decided.text
        again = await http.post(decision_url, json={"approve": False}, headers=support.headers)
        assert again.status_code == 409 and again.json()["type"] == "/problems/return-not-awaiting-decision"
        waiting = await return_in(http, shopper, return_id, {"awaiting_parcel"})
        assert waiting["saga"]["needs_attention"] is None
        assert waiting["request"]["decided_by"] == f"support:{support.user_id}"
        # the parcel arrives without its carrier events: support records it at the inspection
        inspected = await inspect(http, support, return_id, order, 2, "new")
        assert inspected.status_code == 200, inspected.text
        assert inspected.json()["refund_amount"] == 5000  # changed mind: no shipping refund
        await return_in(http, shopper, return_id, {"refunded"})
        final = await order_of(http, shopper, order["id"])
    assert final["order"]["status"] == "returned"
    assert await stock(sessions, variant) == (10, 0)
    assert [r.amount for r in await psp_refunds(stack, order["id"])] == [5000]
    rows = await return_rows(sessions, return_id)
    assert rows["history"] == [
        "requested",
        "approved",
        "awaiting_parcel",
        "received",
        "inspected",
        "refunded",
    ]
    await record_history(stack.client, f"return-{return_id}", "return", "support_approved")


async def _saga_attention(http: httpx.AsyncClient, support: Shopper, return_id: str) -> dict[str, Any] | None:
    body: dict[str, Any] = (
        await http.get(f"/v1/support/returns/{return_id}", headers=support.headers)
    ).json()
    return body if (body.get("saga") or {}).get("needs_attention") else None


async def test_support_rejection(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID], support: Shopper
) -> None:
    async with stack.http() as http:
        shopper, variant, order = await delivered_order(stack, http, sessions, methods, quantity=2)
        return_id = (await ask(http, shopper, order, 2, "no_longer_needed")).json()["return_id"]
        await return_in(http, shopper, return_id, {"awaiting_decision"})
        rejected = await http.post(
            f"/v1/support/returns/{return_id}/decision",
            json={"approve": False, "note": "worn"},
            headers=support.headers,
        )
        assert rejected.status_code == 200 and rejected.json()["status"] == "rejected", rejected.text
        body = await return_in(http, shopper, return_id, {"rejected"})
        assert body["request"]["status"] == "rejected" and body["request"]["decision_note"] == "worn"
        assert body["request"]["authorization"] is None
        late = await inspect(http, support, return_id, order, 2, "new")
        assert late.status_code == 409
        final = await order_of(http, shopper, order["id"])
    assert final["order"]["status"] == "delivered"
    assert await psp_refunds(stack, order["id"]) == []
    assert await stock(sessions, variant) == (8, 0)
    await record_history(stack.client, f"return-{return_id}", "return", "rejected")


# -- the RMA expires --------------------------------------------------------------------------------
async def test_rma_expires_when_the_parcel_never_leaves(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID], support: Shopper
) -> None:
    async with stack.http() as http:
        shopper, _, order = await delivered_order(stack, http, sessions, methods, quantity=1)
        return_id = (await ask(http, shopper, order, 1, "wrong_item")).json()["return_id"]
        await return_in(http, shopper, return_id, {"awaiting_parcel"})
        started = time.monotonic()
        body = await return_in(http, shopper, return_id, {"expired"}, timeout_s=60)
        assert time.monotonic() - started > 5  # a timer, not an immediate refusal
        assert body["request"]["status"] == "expired"
        assert body["request"]["authorization"]["status"] == "expired"
        late = await inspect(http, support, return_id, order, 1, "new")
        assert late.status_code == 409
        again = await ask(http, shopper, order, 1, "wrong_item")  # an expired return holds no units
        assert again.status_code == 202, again.text
    async with CarrierSandboxClient(stack.settings.carrier_url) as carrier:
        (label,) = await carrier.list_labels(reference=str(return_shipment_id(uuid.UUID(return_id))))
    assert label.status == "voided"
    assert await psp_refunds(stack, order["id"]) == []
    await record_history(stack.client, f"return-{return_id}", "return", "rma_expired")


# -- partial returns: discount shares, shipping, quantities ---------------------------------------
async def test_partial_returns_add_up_to_what_was_paid(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID], support: Shopper
) -> None:
    code = f"R{uuid.uuid4().hex[:8].upper()}"
    async with sessions["discount"]() as s, s.begin():
        await discount_service.create_coupon(
            s, CouponIn.model_validate({"code": code, "type": "percentage", "value": 10})
        )
    async with stack.http() as http:
        shopper, variant, order = await delivered_order(
            stack, http, sessions, methods, quantity=3, price_amount=1000, coupon=code
        )
        assert order["discount_amount"] == 300 and order["items"][0]["discount_amount"] == 300
        first = (await ask(http, shopper, order, 1, "changed_mind")).json()
        assert first["status"] == "approved" and first["requested_amount"] == 1000 - 100
        await return_in(http, shopper, first["return_id"], {"awaiting_parcel"})
        inspected = await inspect(http, support, first["return_id"], order, 1, "damaged")
        assert inspected.json()["refund_amount"] == 900, inspected.text
        await return_in(http, shopper, first["return_id"], {"refunded"})
        middle = await order_of(http, shopper, order["id"])
        assert middle["order"]["status"] == "partially_returned"
        assert middle["order"]["items"][0]["returnable_quantity"] == 2
        assert await stock(sessions, variant) == (7, 0)  # damaged: not restocked

        second = (await ask(http, shopper, order, 2, "defective")).json()
        assert second["requested_amount"] == 2000 - 200, second
        waiting = await return_in(http, shopper, second["return_id"], {"awaiting_parcel"})
        assert waiting["saga"]["tracking_number"] is None  # one return label per order (shipping's rule)
        inspected = await inspect(http, support, second["return_id"], order, 2, "new")
        last_refund = 1800 + order["shipping_amount"]  # everything is back, for a seller fault
        assert inspected.json()["refund_amount"] == last_refund, inspected.text
        await return_in(http, shopper, second["return_id"], {"refunded"})
        final = await order_of(http, shopper, order["id"])
        assert final["order"]["status"] == "returned"
        third = await ask(http, shopper, order, 1, "defective")
        assert third.status_code == 409 and third.json()["type"] == "/problems/quantity-not-returnable"
    refunds = [r.amount for r in await psp_refunds(stack, order["id"])]
    assert sorted(refunds) == [900, last_refund]
    assert sum(refunds) == order["total_amount"]  # captured minus refunded is zero: nothing kept
    rows = await ledger_rows(sessions, order["id"])
    assert [r[0] for r in rows] == ["authorize", "capture", "refund", "refund"]
    assert await stock(sessions, variant) == (9, 0)
    await record_history(stack.client, f"return-{second['return_id']}", "return", "partial_second_return")


# -- crash: the payment worker dies after the PSP refunded -----------------------------------------
async def test_payment_worker_killed_mid_refund_refunds_once(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID], support: Shopper
) -> None:
    async with stack.http() as http:
        shopper, variant, order = await delivered_order(stack, http, sessions, methods, quantity=1)
        return_id = (await ask(http, shopper, order, 1, "changed_mind")).json()["return_id"]
        await return_in(http, shopper, return_id, {"awaiting_parcel"})
        async with PspSandboxProvider(stack.settings.psp_url) as psp:
            await psp.inject_fault("refund", "accept_then_delay", delay_ms=4000)
            try:
                inspected = await inspect(http, support, return_id, order, 1, "new")
                assert inspected.status_code == 200, inspected.text

                async def refunded_at_psp() -> bool:
                    (auth,) = await psp.list_authorizations(reference=order["id"])
                    return bool(auth.refunds)

                await eventually(refunded_at_psp, "the PSP accepting the refund", poll_s=0.05)
                stack.supervisor.kill("worker-payment")  # ... before the activity reports
                stack.supervisor.restart("worker-payment")
                done = await return_in(http, shopper, return_id, {"refunded"}, timeout_s=120)
            finally:
                await psp.clear_faults()
    refund = done["request"]["refund_amount"]
    assert refund == 2500
    assert [r.amount for r in await psp_refunds(stack, order["id"])] == [refund]
    assert [r[0] for r in await ledger_rows(sessions, order["id"])] == ["authorize", "capture", "refund"]
    assert (await return_rows(sessions, return_id))["refunds"] == [(refund, "succeeded")]
    assert await stock(sessions, variant) == (10, 0)
