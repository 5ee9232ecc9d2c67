"""The carrier sandbox, exercised through ``CarrierSandboxClient`` against a real subprocess."""

from __future__ import annotations

import uuid

import httpx
import pytest

from core.errors import IdempotencyKeyReused
from sandboxes.signing import verify
from services.shipping.carrier import (
    Address,
    AddressNotServiceable,
    CarrierClient,
    CarrierOperationRefused,
    CarrierSandboxClient,
    CarrierUnavailable,
    Label,
    LabelNotFound,
    ServiceLevel,
    ServiceLevelUnavailable,
)
from tests.sandboxes.conftest import CARRIER_SECRET, WebhookReceiver

NYC = Address(country="US", postal_code="10001", city="New York")
NYC_2 = Address(country="US", postal_code="10003")
SF = Address(country="US", postal_code="94105", city="San Francisco")
BERLIN = Address(country="DE", postal_code="10115", city="Berlin")
NOWHERE = Address(country="US", postal_code="00042")


def _conforms(client: CarrierSandboxClient) -> CarrierClient:
    return client  # mypy checks that the adapter implements the port


def ref() -> str:
    return f"order-{uuid.uuid4().hex[:12]}"


def key() -> str:
    return f"wf-{uuid.uuid4().hex}:buy-label"


async def label(
    carrier: CarrierSandboxClient, webhook_url: str | None = None, service_level: ServiceLevel = "standard"
) -> Label:
    return await carrier.buy_label(
        reference=ref(),
        service_level=service_level,
        destination=SF,
        weight_grams=1200,
        idempotency_key=key(),
        webhook_url=webhook_url,
    )


# -- rates --------------------------------------------------------------------------------------


async def test_rates_are_deterministic_and_grow_with_speed_distance_and_weight(
    carrier: CarrierSandboxClient,
) -> None:
    rates = await carrier.get_rates(origin=NYC, destination=SF, weight_grams=2500)
    assert rates == await carrier.get_rates(origin=NYC, destination=SF, weight_grams=2500)
    by_level = {r.service_level: r for r in rates}
    assert list(by_level) == ["standard", "express", "overnight"]
    assert by_level["standard"].amount < by_level["express"].amount < by_level["overnight"].amount
    assert by_level["standard"].estimated_days > by_level["express"].estimated_days
    assert by_level["standard"].amount == 1282 and by_level["standard"].currency == "USD"  # (495+3*120)*150%

    near = await carrier.get_rates(origin=NYC, destination=NYC_2, weight_grams=2500)
    heavy = await carrier.get_rates(origin=NYC, destination=SF, weight_grams=9000)
    for a, b, c in zip(near, rates, heavy, strict=True):
        assert a.amount < b.amount < c.amount

    abroad = await carrier.get_rates(origin=NYC, destination=BERLIN, weight_grams=2500)
    assert [r.service_level for r in abroad] == ["standard", "express"]  # no overnight abroad
    [express] = await carrier.get_rates(
        origin=NYC, destination=SF, weight_grams=2500, service_level="express"
    )
    assert express == by_level["express"]


async def test_postal_code_000_is_not_serviceable(carrier: CarrierSandboxClient) -> None:
    with pytest.raises(AddressNotServiceable) as exc:
        await carrier.get_rates(origin=NYC, destination=NOWHERE, weight_grams=100)
    assert exc.value.which == "destination" and exc.value.status == 422
    assert exc.value.to_application_error().non_retryable
    reference = ref()
    with pytest.raises(AddressNotServiceable):
        await carrier.buy_label(
            reference=reference,
            service_level="standard",
            destination=NOWHERE,
            weight_grams=100,
            idempotency_key=key(),
        )
    assert await carrier.list_labels(reference) == []


async def test_overnight_abroad_is_unavailable(carrier: CarrierSandboxClient) -> None:
    with pytest.raises(ServiceLevelUnavailable):
        await carrier.buy_label(
            reference=ref(),
            service_level="overnight",
            destination=BERLIN,
            weight_grams=100,
            idempotency_key=key(),
        )


# -- labels -------------------------------------------------------------------------------------


async def test_buy_label_is_idempotent(carrier_url: str, carrier: CarrierSandboxClient) -> None:
    reference, k = ref(), key()
    first = await carrier.buy_label(
        reference=reference, service_level="express", destination=SF, weight_grams=800, idempotency_key=k
    )
    assert (
        first.status == "label_created" and first.tracking_number and first.label_url.startswith(carrier_url)
    )
    assert first.amount > 0 and first.currency == "USD" and first.direction == "outbound"
    again = await carrier.buy_label(
        reference=reference, service_level="express", destination=SF, weight_grams=800, idempotency_key=k
    )
    assert again == first
    assert [lbl.label_id for lbl in await carrier.list_labels(reference)] == [first.label_id]
    with pytest.raises(IdempotencyKeyReused):
        await carrier.buy_label(
            reference=reference,
            service_level="overnight",
            destination=SF,
            weight_grams=800,
            idempotency_key=k,
        )
    async with httpx.AsyncClient(base_url=carrier_url) as http:
        document = await http.get(first.label_url)
        no_key = await http.post(
            "/v1/labels",
            json={
                "reference": reference,
                "service_level": "standard",
                "destination": SF.model_dump(),
                "weight_grams": 1,
            },
        )
    assert document.status_code == 200 and first.tracking_number in document.text
    assert no_key.status_code == 400 and no_key.json()["type"] == "idempotency_key_required"


async def test_void_unused_label_only(carrier: CarrierSandboxClient) -> None:
    unused = await label(carrier)
    assert (await carrier.void_label(unused.label_id, idempotency_key=key())).status == "voided"
    assert (await carrier.void_label(unused.label_id)).status == "voided"  # voiding again is harmless
    with pytest.raises(CarrierOperationRefused) as exc:
        await carrier.advance_shipment(unused.tracking_number)  # a voided label never moves
    assert exc.value.code == "invalid_state"

    used = await label(carrier)
    await carrier.advance_shipment(used.tracking_number)
    with pytest.raises(CarrierOperationRefused) as exc:
        await carrier.void_label(used.label_id)
    assert (exc.value.code, exc.value.label_status) == ("invalid_state", "picked_up")
    with pytest.raises(LabelNotFound):
        await carrier.void_label("lbl_nope")
    with pytest.raises(LabelNotFound):
        await carrier.get_tracking("SB000")


# -- tracking -----------------------------------------------------------------------------------


async def test_advance_to_delivered_sends_signed_tracking_webhooks(
    carrier: CarrierSandboxClient, webhooks: WebhookReceiver
) -> None:
    path = f"/carrier/{uuid.uuid4().hex}"
    shipment = await label(carrier, webhook_url=webhooks.url(path))
    assert (await carrier.get_tracking(shipment.tracking_number)).status == "label_created"

    statuses = [(await carrier.advance_shipment(shipment.tracking_number)).status for _ in range(4)]
    assert statuses == ["picked_up", "in_transit", "out_for_delivery", "delivered"]
    hooks = await webhooks.wait_for(path, 4)
    events = [h.json() for h in hooks]
    for h in hooks:
        verify(CARRIER_SECRET, h.body, h.headers["carrier-signature"])
    assert {e["type"] for e in events} == {"tracking.updated"}
    assert len({e["id"] for e in events}) == 4
    assert sorted(e["data"]["status"] for e in events) == sorted(statuses)
    data = events[0]["data"]
    assert data["tracking_number"] == shipment.tracking_number and data["reference"] == shipment.reference
    assert {"occurred_at", "location", "description"} <= data.keys()

    tracking = await carrier.get_tracking(shipment.tracking_number)
    assert tracking.status == "delivered"
    assert [e.status for e in tracking.events] == ["label_created", *statuses]
    with pytest.raises(CarrierOperationRefused):
        await carrier.advance_shipment(shipment.tracking_number)


async def test_exception_then_resume_and_returned_to_sender(carrier: CarrierSandboxClient) -> None:
    shipment = await label(carrier)
    await carrier.advance_shipment(shipment.tracking_number)
    assert (await carrier.advance_shipment(shipment.tracking_number, event="exception")).status == "exception"
    assert (await carrier.advance_shipment(shipment.tracking_number)).status == "in_transit"
    back = await carrier.advance_shipment(shipment.tracking_number, event="returned_to_sender")
    assert back.status == "returned_to_sender"
    with pytest.raises(CarrierOperationRefused):
        await carrier.advance_shipment(shipment.tracking_number)


async def test_return_label(carrier: CarrierSandboxClient, webhooks: WebhookReceiver) -> None:
    path = f"/carrier/{uuid.uuid4().hex}"
    rma = await carrier.buy_label(
        reference=ref(),
        service_level="standard",
        origin=SF,
        destination=NYC,
        weight_grams=500,
        idempotency_key=key(),
        webhook_url=webhooks.url(path),
        direction="return",
    )
    assert rma.direction == "return" and rma.status == "label_created"
    await carrier.advance_shipment(rma.tracking_number)
    [hook] = await webhooks.wait_for(path, 1)
    assert hook.json()["data"]["direction"] == "return" and hook.json()["data"]["status"] == "picked_up"
    assert (await carrier.get_tracking(rma.tracking_number)).direction == "return"


# -- faults -------------------------------------------------------------------------------------


async def test_error_fault_buys_nothing(carrier: CarrierSandboxClient) -> None:
    reference, k = ref(), key()
    await carrier.inject_fault("create_label", "error")
    with pytest.raises(CarrierUnavailable) as exc:
        await carrier.buy_label(
            reference=reference, service_level="standard", destination=SF, weight_grams=1, idempotency_key=k
        )
    assert exc.value.retryable
    assert await carrier.list_labels(reference) == []
    await carrier.buy_label(
        reference=reference, service_level="standard", destination=SF, weight_grams=1, idempotency_key=k
    )
    assert len(await carrier.list_labels(reference)) == 1


async def test_accept_then_error_retry_returns_the_same_label(carrier: CarrierSandboxClient) -> None:
    reference, k = ref(), key()
    await carrier.inject_fault("create_label", "accept_then_error")
    with pytest.raises(CarrierUnavailable):
        await carrier.buy_label(
            reference=reference, service_level="standard", destination=SF, weight_grams=1, idempotency_key=k
        )
    [bought] = await carrier.list_labels(reference)
    retry = await carrier.buy_label(
        reference=reference, service_level="standard", destination=SF, weight_grams=1, idempotency_key=k
    )
    assert retry.label_id == bought.label_id
    assert len(await carrier.list_labels(reference)) == 1


async def test_delay_fault_times_out_the_adapter(carrier_url: str, carrier: CarrierSandboxClient) -> None:
    await carrier.inject_fault("rates", "delay", delay_ms=1500)
    async with CarrierSandboxClient(carrier_url, timeout=0.3) as impatient:
        with pytest.raises(CarrierUnavailable, match="timed out"):
            await impatient.get_rates(origin=NYC, destination=SF, weight_grams=1)
