"""The shipping saga end to end: a confirmed checkout starts it; the carrier sandbox moves the parcel
and sends signed webhooks to the API, which records them and signals the saga. Checked: first scan
(capture at the PSP, order SHIPPED, mail in the SMTP sink), delivery, a label that cannot be bought
(the order is cancelled with refund and restock), the stall timer and a carrier exception (visible to
support), a shopper cancel before the first scan (label voided) and after it (refused)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from core.db import SessionFactory
from sandboxes.signing import sign
from services.payment.provider import PspSandboxProvider
from services.shipping.carrier import CarrierSandboxClient
from tests.conftest import Stack, record_history
from tests.factories import (
    Shopper,
    StockedVariant,
    fill_cart,
    make_shopper,
    stocked_variant,
)
from tests.probes import eventually, ledger_rows, mail_with, mails, stock
from workflows.shipping import ShippingStatus, ShippingWorkflow, outbound_shipment_id

pytestmark = pytest.mark.timeout(300)


# -- helpers (the return saga tests use them too) ----------------------------------------------------
async def place_order(
    stack: Stack,
    http: httpx.AsyncClient,
    sessions: dict[str, SessionFactory],
    method_id: uuid.UUID,
    *,
    shopper: Shopper | None = None,
    variant: StockedVariant | None = None,
    quantity: int = 2,
    coupon: str | None = None,
) -> tuple[Shopper, StockedVariant, str]:
    """A confirmed order (checkout over the API); returns the shopper, the variant and the order id."""
    shopper = shopper or await make_shopper(sessions, stack.settings)
    variant = variant or await stocked_variant(sessions, on_hand=10, price_amount=2500)
    await fill_cart(sessions, shopper.user_id, variant, quantity=quantity)
    started = await http.post(
        "/v1/checkout",
        json={
            "shipping_address_id": str(shopper.address_id),
            "shipping_method_id": str(method_id),
            "payment_method_id": str(shopper.payment_method_id),
            **({"coupon_code": coupon} if coupon else {}),
        },
        headers={**shopper.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert started.status_code == 202, started.text
    order_id: str = started.json()["order_id"]
    await order_status(http, shopper, order_id, {"confirmed"})
    return shopper, variant, order_id


async def order_status(
    http: httpx.AsyncClient,
    shopper: Shopper,
    order_id: str,
    wanted: set[str],
    timeout_s: float = 60,
    *,
    checkout: str | None = None,
) -> dict[str, Any]:
    """Wait for the order row's status (and, with ``checkout``, the checkout saga's)."""

    async def check() -> dict[str, Any] | None:
        response = await http.get(f"/v1/orders/{order_id}", headers=shopper.headers)
        body: dict[str, Any] = response.json()
        if response.status_code != 200 or body["status"] not in wanted:
            return None
        if checkout is not None and (body["saga"] or {}).get("status") != checkout:
            return None
        return body

    result: dict[str, Any] = await eventually(check, f"order {order_id} in {wanted}", timeout_s)
    return result


async def wait_label(http: httpx.AsyncClient, shopper: Shopper, order_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await http.get(f"/v1/orders/{order_id}/shipment", headers=shopper.headers)
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and body["tracking_number"] else None

    result: dict[str, Any] = await eventually(check, f"a label for order {order_id}")
    return result


async def advance(stack: Stack, tracking_number: str, event: Any = None) -> None:
    async with CarrierSandboxClient(stack.settings.carrier_url) as carrier:
        await carrier.advance_shipment(tracking_number, event=event)


async def saga(stack: Stack, order_id: str) -> ShippingStatus:
    status: ShippingStatus = await stack.client.get_workflow_handle(f"shipping-{order_id}").query(
        ShippingWorkflow.query_status
    )
    return status


async def saga_in(
    stack: Stack, order_id: str, check: Any, what: str, timeout_s: float = 30
) -> ShippingStatus:
    async def probe() -> ShippingStatus | None:
        status = await saga(stack, order_id)
        return status if check(status) else None

    result: ShippingStatus = await eventually(probe, what, timeout_s)
    return result


async def deliver(stack: Stack, http: httpx.AsyncClient, shopper: Shopper, order_id: str) -> dict[str, Any]:
    """Move a confirmed order's parcel to delivered (4 carrier events); returns the delivered order."""
    tracking = (await wait_label(http, shopper, order_id))["tracking_number"]
    for _ in range(4):  # picked_up, in_transit, out_for_delivery, delivered
        await advance(stack, tracking)
    return await order_status(http, shopper, order_id, {"delivered"})


async def psp_authorization(stack: Stack, order_id: str) -> Any:
    async with PspSandboxProvider(stack.settings.psp_url) as psp:
        (auth,) = await psp.list_authorizations(reference=order_id)
        return auth


async def shipment_row(sessions: dict[str, SessionFactory], order_id: str) -> dict[str, Any]:
    async with sessions["shipping"]() as s:
        row = (
            await s.execute(
                text("SELECT status, label_id, shipped_at, delivered_at FROM shipments WHERE id = :i"),
                {"i": outbound_shipment_id(uuid.UUID(order_id))},
            )
        ).one()
    return dict(row._mapping)


# -- the happy path -----------------------------------------------------------------------------------
async def test_first_scan_captures_ships_and_delivery_completes(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    async with stack.http() as http:
        shopper, _, order_id = await place_order(stack, http, sessions, methods["US:standard"])
        shipment = await wait_label(http, shopper, order_id)
        assert shipment["status"] == "label_purchased" and shipment["events"] == []
        stranger = await make_shopper(sessions, stack.settings)
        other = await http.get(f"/v1/orders/{order_id}/shipment", headers=stranger.headers)
        assert other.status_code == 404 and other.headers["content-type"] == "application/problem+json"
        assert (await psp_authorization(stack, order_id)).status == "authorized"

        await advance(stack, shipment["tracking_number"])  # first scan
        body = await order_status(http, shopper, order_id, {"shipped"}, checkout="shipped")
        assert body["order"]["shipment_id"] == shipment["shipment_id"]
        auth = await eventually(
            lambda: _captured(stack, order_id), "the capture at the PSP after the first scan"
        )
        total = body["order"]["total_amount"]
        assert auth.captured_amount == total
        assert await ledger_rows(sessions, order_id) == [
            ("authorize", "succeeded", total),
            ("capture", "succeeded", total),
        ]
        shipped_mail = await mail_with(stack, shopper.email, "is on its way")
        assert shipment["tracking_number"] in shipped_mail["text"]

        for _ in range(3):
            await advance(stack, shipment["tracking_number"])
        delivered = await order_status(http, shopper, order_id, {"delivered"})
        assert delivered["order"]["delivered_at"] is not None
        await mail_with(stack, shopper.email, "has been delivered")
        tracking = (await http.get(f"/v1/orders/{order_id}/shipment", headers=shopper.headers)).json()
    assert tracking["status"] == "delivered"
    assert [e["status"] for e in tracking["events"]] == [
        "picked_up",
        "in_transit",
        "out_for_delivery",
        "delivered",
    ]
    assert tracking["saga"]["status"] == "delivered" and tracking["saga"]["payment_status"] == "captured"
    row = await shipment_row(sessions, order_id)
    assert row["status"] == "delivered" and row["shipped_at"] and row["delivered_at"]
    # exactly one of each mail, whatever the webhook retries
    subjects = [m["subject"] for m in await mails(stack, shopper.email)]
    assert sum("on its way" in s for s in subjects) == 1 and sum("delivered" in s for s in subjects) == 1
    await record_history(stack.client, f"shipping-{order_id}", "shipping", "delivered")


async def _captured(stack: Stack, order_id: str) -> Any:
    auth = await psp_authorization(stack, order_id)
    return auth if auth.status == "captured" else None


# -- failure branches ----------------------------------------------------------------------------------
async def test_label_failure_cancels_the_order_with_refund_and_restock(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    shopper = await make_shopper(sessions, stack.settings)
    variant = await stocked_variant(sessions, on_hand=5)
    await fill_cart(sessions, shopper.user_id, variant, quantity=2)
    async with CarrierSandboxClient(stack.settings.carrier_url) as carrier, stack.http() as http:
        await carrier.inject_fault("create_label", "error", count=50)
        try:
            started = await http.post(
                "/v1/checkout",
                json={
                    "shipping_address_id": str(shopper.address_id),
                    "shipping_method_id": str(methods["US:standard"]),
                    "payment_method_id": str(shopper.payment_method_id),
                },
                headers={**shopper.headers, "Idempotency-Key": str(uuid.uuid4())},
            )
            order_id = started.json()["order_id"]
            body = await order_status(http, shopper, order_id, {"cancelled"}, checkout="cancelled")
        finally:
            await carrier.clear_faults()
    assert "label" in (body["saga"]["failure_reason"] or ""), body["saga"]
    assert await stock(sessions, variant) == (5, 0)  # committed, then restocked
    assert (await psp_authorization(stack, order_id)).status == "voided"
    assert [r[0] for r in await ledger_rows(sessions, order_id)] == ["authorize", "void"]
    status = await saga(stack, order_id)
    assert status.status == "label_failed" and status.tracking_number is None
    assert (await shipment_row(sessions, order_id))["status"] == "cancelled"
    await record_history(stack.client, f"shipping-{order_id}", "shipping", "label_failed")


async def test_stall_timer_and_carrier_exception_are_visible_to_support(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    support = await make_shopper(sessions, stack.settings, roles=("support",))
    async with stack.http() as http:
        shopper, _, order_id = await place_order(stack, http, sessions, methods["US:standard"])
        tracking = (await wait_label(http, shopper, order_id))["tracking_number"]
        # nobody picks the parcel up: the no-pickup timer (seconds in tests) alerts support
        stalled = await saga_in(stack, order_id, lambda s: s.needs_attention, "a stall alert", timeout_s=30)
        assert "picked the parcel up" in (stalled.needs_attention or "")
        view = await eventually(
            lambda: _support_view(http, support, order_id), "NeedsAttention on the shipping saga"
        )
        assert "Needs attention" in (view["details"] or "")
        stall_mail = await mail_with(stack, stack.settings.support_alert_email, f"shipping-{order_id}")
        assert (
            "shipment stalled" in stall_mail["text"]
            and f"/v1/support/orders/{order_id}" in stall_mail["text"]
        )

        await advance(stack, tracking)  # the carrier comes after all: the alert clears
        moving = await saga_in(stack, order_id, lambda s: s.status == "shipped", "shipped")
        assert moving.needs_attention is None and len(moving.alerts) == 1
        await order_status(http, shopper, order_id, {"shipped"})

        await advance(stack, tracking, "exception")
        exception = await saga_in(stack, order_id, lambda s: s.carrier_status == "exception", "exception")
        assert "exception" in (exception.needs_attention or "")
        view = await eventually(lambda: _support_view(http, support, order_id), "the exception for support")
        assert "delayed" in (view["details"] or "")

        async def exception_mail() -> dict[str, Any] | None:
            found = await mails(stack, stack.settings.support_alert_email)
            return next(
                (m for m in found if order_id in m["text"] and "carrier exception" in m["text"]), None
            )

        await eventually(exception_mail, "the carrier exception mailed to support")

        await advance(stack, tracking)  # resumes: in_transit
        resumed = await saga_in(stack, order_id, lambda s: s.carrier_status == "in_transit", "resumed")
        assert resumed.needs_attention is None and resumed.status == "shipped"
    await record_history(stack.client, f"shipping-{order_id}", "shipping", "stalled_then_exception")


async def _support_view(http: httpx.AsyncClient, support: Shopper, order_id: str) -> dict[str, Any] | None:
    response = await http.get(f"/v1/support/sagas/shipping-{order_id}", headers=support.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body if body["needs_attention"] else None


async def test_cancel_before_first_scan_voids_the_label_and_after_it_is_refused(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    async with stack.http() as http:
        shopper, variant, order_id = await place_order(stack, http, sessions, methods["US:standard"])
        label = await wait_label(http, shopper, order_id)
        cancelled = await http.post(
            f"/v1/orders/{order_id}/cancel", json={"reason": "found it cheaper"}, headers=shopper.headers
        )
        assert cancelled.status_code in (200, 202), cancelled.text
        await order_status(http, shopper, order_id, {"cancelled"}, checkout="cancelled")
        async with CarrierSandboxClient(stack.settings.carrier_url) as carrier:
            (carrier_label,) = await carrier.list_labels(reference=label["shipment_id"])
        assert carrier_label.status == "voided"
        assert (await shipment_row(sessions, order_id))["status"] == "cancelled"
        assert (await saga(stack, order_id)).status == "cancelled"
        assert await stock(sessions, variant) == (10, 0)
        assert (await psp_authorization(stack, order_id)).status == "voided"
        await record_history(stack.client, f"shipping-{order_id}", "shipping", "cancelled_before_pickup")

        shopper2, _, second = await place_order(stack, http, sessions, methods["US:standard"])
        tracking = (await wait_label(http, shopper2, second))["tracking_number"]
        await advance(stack, tracking)
        await order_status(http, shopper2, second, {"shipped"})
        late = await http.post(f"/v1/orders/{second}/cancel", json={}, headers=shopper2.headers)
        assert late.status_code == 409, late.text


async def test_carrier_webhook_signature_duplicates_and_unknown_labels(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID]
) -> None:
    secret = stack.settings.carrier_webhook_secret
    unknown = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "tracking.updated",
        "data": {
            "tracking_number": "SBX-NOPE",
            "status": "in_transit",
            "occurred_at": "2025-01-01T00:00:00Z",
        },
    }
    raw = json.dumps(unknown).encode()
    async with stack.http() as http:
        bad = await http.post(
            "/v1/webhooks/carriers",
            content=raw,
            headers={"Carrier-Signature": sign("wrong-secret", raw), "Content-Type": "application/json"},
        )
        assert bad.status_code == 401 and bad.headers["content-type"] == "application/problem+json"
        assert (await http.post("/v1/webhooks/carriers", content=raw)).status_code == 401
        signed = {"Carrier-Signature": sign(secret, raw), "Content-Type": "application/json"}
        assert (await http.post("/v1/webhooks/carriers", content=raw, headers=signed)).status_code == 404

        # a delivered event sent again (the carrier's retry) is acknowledged as a duplicate
        shopper, _, order_id = await place_order(stack, http, sessions, methods["US:standard"], quantity=1)
        tracking = (await wait_label(http, shopper, order_id))["tracking_number"]
        await advance(stack, tracking)
        await order_status(http, shopper, order_id, {"shipped"})
        async with httpx.AsyncClient(base_url=stack.settings.carrier_url, timeout=10) as carrier:
            deliveries = (await carrier.get("/_control/webhooks")).json()
        body = next(d["body"] for d in deliveries if tracking in d["body"]).encode()
        again = await http.post(
            "/v1/webhooks/carriers",
            content=body,
            headers={"Carrier-Signature": sign(secret, body), "Content-Type": "application/json"},
        )
    assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
    async with sessions["shipping"]() as s:
        count = (
            await s.execute(
                text("SELECT count(*) FROM shipment_tracking WHERE shipment_id = :i"),
                {"i": outbound_shipment_id(uuid.UUID(order_id))},
            )
        ).scalar()
    assert count == 1
