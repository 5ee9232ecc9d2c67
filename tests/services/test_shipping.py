"""Shipping service on the real shipping_db, labels against the carrier sandbox as a real subprocess."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from pydantic import ValidationError
from sqlalchemy import Select, func, select
from sqlmodel import col
from temporalio.exceptions import ApplicationError

from activities.shipping import (
    BuyLabelInput,
    CancelShipmentInput,
    CreateShipmentInput,
    QuoteInput,
    RecordTrackingEventInput,
    ShippingActivities,
)
from core.db import SessionFactory
from services.shipping import service
from services.shipping.carrier import Address, CarrierClient, CarrierSandboxClient
from services.shipping.demo import load_demo_shipping
from services.shipping.errors import DuplicateShippingConfig, InvalidShippingConfig
from services.shipping.models import Shipment, ShipmentTracking, ledger
from services.shipping.schemas import (
    CarrierIn,
    MethodIn,
    MethodUpdate,
    QuoteAddress,
    RateIn,
    RateUpdate,
    ZoneIn,
    ZoneUpdate,
)
from tests.sandboxes import conftest as sandboxes
from tests.sandboxes.conftest import WebhookReceiver

# The sandbox fixtures (real subprocesses), made visible to this module.
carrier_url = sandboxes.carrier_url
carrier = sandboxes.carrier
webhooks = sandboxes.webhooks

# User-assigned ISO codes (never real countries), one per configuration, so tests never share a zone.
_COUNTRIES: Iterator[str] = (f"X{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWYZ")


# Quotes and shipment creation never call the carrier.
NO_CARRIER = cast(CarrierClient, object())


@dataclass
class Config:
    country: str
    zone_id: uuid.UUID
    standard_id: uuid.UUID
    express_id: uuid.UUID


@pytest.fixture
def db(sessions: dict[str, SessionFactory]) -> SessionFactory:
    return sessions["shipping"]


async def make_config(db: SessionFactory, *, patterns: list[str] | None = None) -> Config:
    """A carrier, a one-country zone and two methods: standard with three weight bands and free
    shipping from 5000, express with one band."""
    country = next(_COUNTRIES)
    suffix = uuid.uuid4().hex[:8]
    async with db() as s, s.begin():
        carrier_row = await service.create_carrier(
            s,
            CarrierIn(
                code=f"test-{suffix}",
                name="Test carrier",
                tracking_url_template="https://track.test/{tracking_number}",
            ),
        )
        zone = await service.create_zone(
            s, ZoneIn(name=f"zone {country} {suffix}", countries=[country], postal_code_patterns=patterns)
        )
        std = await service.create_method(
            s,
            MethodIn(
                carrier_id=carrier_row.id,
                zone_id=zone.id,
                code="standard",
                name="Standard",
                service_level="standard",
                min_delivery_days=3,
                max_delivery_days=5,
            ),
        )
        exp = await service.create_method(
            s,
            MethodIn(
                carrier_id=carrier_row.id,
                zone_id=zone.id,
                code="express",
                name="Express",
                service_level="express",
                min_delivery_days=1,
                max_delivery_days=2,
            ),
        )
        for low, high, amount in ((0, 1000, 500), (1000, 5000, 800), (5000, 20000, 1500)):
            await service.create_rate(
                s,
                RateIn(
                    method_id=std.id,
                    min_weight_grams=low,
                    max_weight_grams=high,
                    amount=amount,
                    currency="USD",
                    free_over_amount=5000,
                ),
            )
        await service.create_rate(
            s,
            RateIn(method_id=exp.id, min_weight_grams=0, max_weight_grams=20000, amount=2000, currency="USD"),
        )
    return Config(country, zone.id, std.id, exp.id)


def quote_input(cfg: Config, weight: int, subtotal: int, *, method: uuid.UUID | None = None) -> QuoteInput:
    return QuoteInput(
        address=QuoteAddress(country=cfg.country, postal_code="12345"),
        shipping_method_id=method or cfg.standard_id,
        weight_grams=weight,
        subtotal_amount=subtotal,
        currency="USD",
    )


def key() -> str:
    return f"wf-{uuid.uuid4().hex}:step"


async def count(db: SessionFactory, stmt: Select[int]) -> int:
    async with db() as s:
        return int((await s.execute(stmt)).scalar_one())


# --------------------------------------------------------------------------------------------
# Quotes


async def test_quote_by_zone_weight_band_and_free_threshold(db: SessionFactory) -> None:
    cfg = await make_config(db)
    acts = ShippingActivities(db, NO_CARRIER)

    light = await acts.quote(quote_input(cfg, 999, 1000))
    assert (light.amount, light.currency, light.method_code) == (500, "USD", "standard")
    assert light.carrier_code.startswith("test-") and light.estimated_days == 5 and not light.free_shipping
    assert (await acts.quote(quote_input(cfg, 1000, 1000))).amount == 800  # bands are [min, max)
    assert (await acts.quote(quote_input(cfg, 19999, 4999))).amount == 1500
    free = await acts.quote(quote_input(cfg, 1500, 5000))  # subtotal reaches free_over_amount
    assert free.amount == 0 and free.free_shipping
    express = await acts.quote(quote_input(cfg, 1500, 9000, method=cfg.express_id))
    assert (express.amount, express.method_code, express.estimated_days) == (2000, "express", 2)

    with pytest.raises(ApplicationError) as too_heavy:
        await acts.quote(quote_input(cfg, 20000, 100))
    assert too_heavy.value.type == "NoRateAvailable" and too_heavy.value.non_retryable
    other_currency = quote_input(cfg, 500, 100).model_copy(update={"currency": "EUR"})
    with pytest.raises(ApplicationError) as no_eur:
        await acts.quote(other_currency)
    assert no_eur.value.type == "NoRateAvailable"

    async with db() as s:
        methods = await service.available_methods(
            s,
            address=QuoteAddress(country=cfg.country, postal_code="1"),
            weight_grams=500,
            subtotal_amount=100,
            currency="USD",
        )
    assert [(q.method_code, q.amount) for q in methods] == [("standard", 500), ("express", 2000)]


async def test_address_not_served(db: SessionFactory) -> None:
    cfg = await make_config(db)
    patterned = await make_config(db, patterns=[r"9\d{4}"])
    acts = ShippingActivities(db, NO_CARRIER)

    # A method of another zone does not serve the address (whatever zone the address falls in).
    wrong_zone = quote_input(cfg, 500, 100).model_copy(
        update={"address": QuoteAddress(country=patterned.country, postal_code="90210")}
    )
    with pytest.raises(ApplicationError) as err:
        await acts.quote(wrong_zone)
    assert err.value.type == "AddressNotServed" and err.value.non_retryable
    # Inside the zone's postal patterns it is served; outside them it is not.
    assert (
        await acts.quote(
            quote_input(patterned, 500, 100).model_copy(
                update={"address": QuoteAddress(country=patterned.country, postal_code="90210")}
            )
        )
    ).amount == 500
    with pytest.raises(ApplicationError) as outside:
        await acts.quote(quote_input(patterned, 500, 100))  # postal code 12345
    assert outside.value.type == "AddressNotServed"
    # An unknown method is refused as such.
    with pytest.raises(ApplicationError) as unknown:
        await acts.quote(quote_input(cfg, 500, 100, method=uuid.uuid4()))
    assert unknown.value.type == "ShippingMethodUnavailable"
    # Bad input never reaches the database.
    with pytest.raises(ValidationError):
        QuoteInput(
            address={"country": "usa", "postal_code": "1"},
            shipping_method_id=cfg.standard_id,
            weight_grams=0,
            subtotal_amount=-1,
            currency="usd",
        )


async def test_demo_configuration_is_idempotent_and_quotes(db: SessionFactory) -> None:
    async with db() as s, s.begin():
        first = await load_demo_shipping(s)
    async with db() as s, s.begin():
        again = await load_demo_shipping(s)
    assert first == again and {
        "US:standard",
        "US:express",
        "US:overnight",
        "EU:standard",
        "WORLD:standard",
    } <= set(first)
    acts = ShippingActivities(db, NO_CARRIER)

    def q(country: str, method: str, weight: int, subtotal: int) -> QuoteInput:
        return QuoteInput(
            address=QuoteAddress(country=country, postal_code="10115"),
            shipping_method_id=first[method],
            weight_grams=weight,
            subtotal_amount=subtotal,
            currency="USD",
        )

    assert (await acts.quote(q("US", "US:standard", 1500, 4999))).amount == 899
    assert (await acts.quote(q("US", "US:standard", 1500, 5000))).amount == 0
    assert (await acts.quote(q("US", "US:express", 1500, 5000))).amount == 1799  # free is standard only
    assert (await acts.quote(q("DE", "EU:standard", 500, 100))).amount == 1499
    assert (await acts.quote(q("JP", "WORLD:express", 500, 100))).carrier_code == "sandbox-carrier"
    with pytest.raises(ApplicationError) as err:
        await acts.quote(q("DE", "US:standard", 500, 100))
    assert err.value.type == "AddressNotServed"


# --------------------------------------------------------------------------------------------
# Shipments and labels


def shipment_input(cfg: Config, **overrides: object) -> CreateShipmentInput:
    values: dict[str, object] = {
        "idempotency_key": key(),
        "shipment_id": uuid.uuid4(),
        "order_id": uuid.uuid4(),
        "user_id": uuid.uuid4(),
        "direction": "outbound",
        "method_id": cfg.standard_id,
        "address": {"country": cfg.country, "postal_code": "12345", "city": "Testville", "name": "Ada"},
        "weight_grams": 1200,
        "items": [{"variant_id": uuid.uuid4(), "quantity": 2}],
    }
    values.update(overrides)
    return CreateShipmentInput.model_validate(values)


async def test_create_shipment_idempotent_and_one_per_order_direction(db: SessionFactory) -> None:
    cfg = await make_config(db)
    acts = ShippingActivities(db, NO_CARRIER)
    inp = shipment_input(cfg)
    first = await acts.create_shipment(inp)
    assert first.shipment_id == inp.shipment_id and first.status == "pending"
    assert await acts.create_shipment(inp) == first  # same key: first result, no second row
    async with db() as s:
        row = await s.get(Shipment, inp.shipment_id)
        assert row is not None and row.status == "pending" and row.address["city"] == "Testville"
        assert row.items[0]["quantity"] == 2 and row.version == 1
    assert (
        await count(
            db, select(func.count()).select_from(Shipment).where(col(Shipment.order_id) == inp.order_id)
        )
        == 1
    )

    # Same key, different request: refused.
    with pytest.raises(ApplicationError) as reused:
        await acts.create_shipment(inp.model_copy(update={"weight_grams": 999}))
    assert reused.value.type == "IdempotencyKeyReused"
    # Another shipment id for the same order and direction: refused, nothing written.
    other = inp.model_copy(update={"idempotency_key": key(), "shipment_id": uuid.uuid4()})
    with pytest.raises(ApplicationError) as dup:
        await acts.create_shipment(other)
    assert dup.value.type == "ShipmentAlreadyExists"
    async with db() as s:
        assert (
            await s.execute(select(ledger.c.key).where(ledger.c.key == other.idempotency_key))
        ).first() is None
    # The return direction of the same order is a separate shipment.
    ret = await acts.create_shipment(other.model_copy(update={"direction": "return"}))
    assert ret.shipment_id == other.shipment_id
    # An address outside the method's zone is refused.
    with pytest.raises(ApplicationError) as not_served:
        await acts.create_shipment(
            shipment_input(cfg, address={"country": "ZZ", "postal_code": "1"}, shipment_id=uuid.uuid4())
        )
    assert not_served.value.type == "AddressNotServed"


async def test_buy_label_against_the_carrier_sandbox_once(
    db: SessionFactory, carrier: CarrierSandboxClient
) -> None:
    cfg = await make_config(db)
    acts = ShippingActivities(db, carrier)
    created = shipment_input(cfg)
    await acts.create_shipment(created)
    inp = BuyLabelInput(idempotency_key=key(), shipment_id=created.shipment_id)

    # A first attempt reached the carrier and then died before writing: the retry replays the call.
    lost = await carrier.buy_label(
        reference=str(created.shipment_id),
        service_level="standard",
        destination=Address(country=cfg.country, postal_code="12345", city="Testville", name="Ada"),
        weight_grams=1200,
        idempotency_key=inp.idempotency_key,
        direction="outbound",
    )
    label = await acts.buy_label(inp)
    assert label.tracking_number == lost.tracking_number and label.label_id == lost.label_id
    assert label.cost_amount == lost.amount > 0 and label.currency == "USD"
    assert label.tracking_url == f"https://track.test/{label.tracking_number}"
    again = await acts.buy_label(inp)  # answered from the ledger
    assert again == label
    labels = await carrier.list_labels(reference=str(created.shipment_id))
    assert len(labels) == 1

    async with db() as s:
        row = await s.get(Shipment, created.shipment_id)
        assert row is not None
        assert (row.status, row.tracking_number, row.label_id) == (
            "label_purchased",
            label.tracking_number,
            label.label_id,
        )
        assert row.cost_amount == label.cost_amount and row.version == 2
    # A second purchase under another key is refused: the shipment already has its label.
    with pytest.raises(ApplicationError) as second:
        await acts.buy_label(BuyLabelInput(idempotency_key=key(), shipment_id=created.shipment_id))
    assert second.value.type == "InvalidShipmentState"
    assert len(await carrier.list_labels(reference=str(created.shipment_id))) == 1


async def test_return_label_goes_to_the_warehouse(db: SessionFactory, carrier: CarrierSandboxClient) -> None:
    cfg = await make_config(db)
    acts = ShippingActivities(db, carrier)
    created = shipment_input(cfg, direction="return")
    await acts.create_shipment(created)
    label = await acts.buy_label(BuyLabelInput(idempotency_key=key(), shipment_id=created.shipment_id))
    [at_carrier] = await carrier.list_labels(reference=str(created.shipment_id))
    assert at_carrier.direction == "return" and at_carrier.tracking_number == label.tracking_number


async def test_carrier_outage_is_retryable_and_writes_nothing(
    db: SessionFactory, carrier: CarrierSandboxClient
) -> None:
    cfg = await make_config(db)
    acts = ShippingActivities(db, carrier)
    created = shipment_input(cfg)
    await acts.create_shipment(created)
    inp = BuyLabelInput(idempotency_key=key(), shipment_id=created.shipment_id)
    await carrier.inject_fault("create_label", "error", count=1)
    with pytest.raises(ApplicationError) as err:
        await acts.buy_label(inp)
    assert err.value.type == "CarrierUnavailable" and not err.value.non_retryable
    async with db() as s:
        row = await s.get(Shipment, created.shipment_id)
        assert row is not None and row.status == "pending" and row.tracking_number is None
    label = await acts.buy_label(inp)  # the retry succeeds
    assert len(await carrier.list_labels(reference=str(created.shipment_id))) == 1
    assert label.tracking_number


async def test_cancel_voids_the_label_and_is_refused_after_pickup(
    db: SessionFactory, carrier: CarrierSandboxClient
) -> None:
    cfg = await make_config(db)
    acts = ShippingActivities(db, carrier)
    created = shipment_input(cfg)
    await acts.create_shipment(created)
    label = await acts.buy_label(BuyLabelInput(idempotency_key=key(), shipment_id=created.shipment_id))
    cancel = CancelShipmentInput(idempotency_key=key(), shipment_id=created.shipment_id)
    result = await acts.cancel_shipment(cancel)
    assert (result.status, result.label_voided) == ("cancelled", True)
    assert await acts.cancel_shipment(cancel) == result
    [at_carrier] = await carrier.list_labels(reference=str(created.shipment_id))
    assert at_carrier.status == "voided"
    async with db() as s:
        row = await s.get(Shipment, created.shipment_id)
        assert row is not None and row.status == "cancelled" and row.cancelled_at is not None
    assert label.tracking_number

    # Picked up: nothing to void any more, the cancellation is refused.
    moving = shipment_input(cfg)
    await acts.create_shipment(moving)
    moving_label = await acts.buy_label(BuyLabelInput(idempotency_key=key(), shipment_id=moving.shipment_id))
    await acts.record_tracking_event(
        RecordTrackingEventInput(
            carrier_event_id=f"evt_{uuid.uuid4().hex}",
            tracking_number=moving_label.tracking_number,
            status="picked_up",
            occurred_at=datetime.now(UTC),
        )
    )
    with pytest.raises(ApplicationError) as refused:
        await acts.cancel_shipment(CancelShipmentInput(idempotency_key=key(), shipment_id=moving.shipment_id))
    assert refused.value.type == "InvalidShipmentState"


# --------------------------------------------------------------------------------------------
# Tracking


async def labelled_shipment(
    db: SessionFactory, acts: ShippingActivities, cfg: Config, webhook_url: str | None = None
) -> str:
    created = shipment_input(cfg)
    await acts.create_shipment(created)
    label = await acts.buy_label(
        BuyLabelInput(idempotency_key=key(), shipment_id=created.shipment_id, webhook_url=webhook_url)
    )
    return label.tracking_number


async def test_tracking_events_from_carrier_webhooks(
    db: SessionFactory, carrier: CarrierSandboxClient, webhooks: WebhookReceiver
) -> None:
    """Follow a parcel: the carrier's signed webhooks feed record_tracking_event; flags and dedupe."""
    cfg = await make_config(db)
    acts = ShippingActivities(db, carrier)
    path = f"/carrier/{uuid.uuid4().hex}"
    tracking_number = await labelled_shipment(db, acts, cfg, webhooks.url(path))

    outcomes = []
    for n in range(1, 5):  # picked_up, in_transit, out_for_delivery, delivered
        await carrier.advance_shipment(tracking_number)
        event = (await webhooks.wait_for(path, n))[-1].json()
        data = event["data"]
        inp = RecordTrackingEventInput(
            carrier_event_id=event["id"],
            tracking_number=data["tracking_number"],
            status=data["status"],
            occurred_at=data["occurred_at"],
            location=data["location"],
            description=data["description"],
        )
        outcome = await acts.record_tracking_event(inp)
        outcomes.append((outcome.status, outcome.first_scan, outcome.delivered, outcome.duplicate))
        redelivered = await acts.record_tracking_event(inp)  # the webhook arrives twice
        assert redelivered.duplicate and (redelivered.first_scan, redelivered.delivered) == (
            outcome.first_scan,
            outcome.delivered,
        )
    assert outcomes == [
        ("picked_up", True, False, False),
        ("in_transit", False, False, False),
        ("out_for_delivery", False, False, False),
        ("delivered", False, True, False),
    ]
    async with db() as s:
        row = (
            await s.scalars(select(Shipment).where(col(Shipment.tracking_number) == tracking_number))
        ).one()
        assert row.status == "delivered" and row.shipped_at is not None and row.delivered_at is not None
        assert (
            await count(
                db,
                select(func.count())
                .select_from(ShipmentTracking)
                .where(col(ShipmentTracking.shipment_id) == row.id),
            )
            == 4
        )


async def test_tracking_moves_only_forward(db: SessionFactory, carrier: CarrierSandboxClient) -> None:
    cfg = await make_config(db)
    acts = ShippingActivities(db, carrier)
    tracking_number = await labelled_shipment(db, acts, cfg)
    t0 = datetime.now(UTC)

    async def event(status: str, minutes: int) -> tuple[str, bool, bool, bool]:
        o = await acts.record_tracking_event(
            RecordTrackingEventInput(
                carrier_event_id=f"evt_{uuid.uuid4().hex}",
                tracking_number=tracking_number,
                status=status,
                occurred_at=t0 + timedelta(minutes=minutes),
            )
        )
        return (o.status, o.first_scan, o.delivered, o.duplicate)

    assert await event("label_created", 0) == ("label_purchased", False, False, False)
    # The picked_up event was lost: the first event after pickup is the first scan.
    assert await event("in_transit", 2) == ("in_transit", True, False, False)
    assert await event("picked_up", 1) == ("in_transit", False, False, False)  # late: history only
    assert await event("exception", 3) == ("exception", False, False, False)
    assert await event("in_transit", 4) == ("exception", False, False, False)  # not past the furthest
    assert await event("out_for_delivery", 5) == ("out_for_delivery", False, False, False)
    assert await event("delivered", 6) == ("delivered", False, True, False)
    assert await event("exception", 7) == ("delivered", False, False, False)  # final
    async with db() as s:
        row = (
            await s.scalars(select(Shipment).where(col(Shipment.tracking_number) == tracking_number))
        ).one()
        assert row.shipped_at == t0 + timedelta(minutes=2) and row.delivered_at == t0 + timedelta(minutes=6)

    with pytest.raises(ApplicationError) as unknown:
        await acts.record_tracking_event(
            RecordTrackingEventInput(
                carrier_event_id="evt_x", tracking_number="SB-NOPE", status="picked_up", occurred_at=t0
            )
        )
    assert unknown.value.type == "ShipmentNotFound"


async def test_concurrent_redeliveries_record_one_event(
    db: SessionFactory, carrier: CarrierSandboxClient
) -> None:
    cfg = await make_config(db)
    acts = ShippingActivities(db, carrier)
    tracking_number = await labelled_shipment(db, acts, cfg)
    inp = RecordTrackingEventInput(
        carrier_event_id=f"evt_{uuid.uuid4().hex}",
        tracking_number=tracking_number,
        status="picked_up",
        occurred_at=datetime.now(UTC),
    )
    outcomes = await asyncio.gather(*(acts.record_tracking_event(inp) for _ in range(8)))
    assert sum(not o.duplicate for o in outcomes) == 1
    assert all(o.first_scan and o.status == "picked_up" for o in outcomes)
    assert (
        await count(
            db,
            select(func.count())
            .select_from(ShipmentTracking)
            .where(col(ShipmentTracking.carrier_event_id) == inp.carrier_event_id),
        )
        == 1
    )


async def test_admin_configuration_rules(db: SessionFactory) -> None:
    cfg = await make_config(db)
    acts = ShippingActivities(db, NO_CARRIER)
    async with db() as s, s.begin():
        zone = next(z for z in await service.list_zones(s) if z.id == cfg.zone_id)
        with pytest.raises(DuplicateShippingConfig):
            await service.create_zone(s, ZoneIn(name=zone.name, countries=["XY"]))
        with pytest.raises(InvalidShippingConfig, match="overlaps"):
            await service.create_rate(
                s,
                RateIn(
                    method_id=cfg.standard_id,
                    min_weight_grams=500,
                    max_weight_grams=1500,
                    amount=1,
                    currency="USD",
                ),
            )
        # A second currency is a separate band set.
        await service.create_rate(
            s,
            RateIn(
                method_id=cfg.standard_id,
                min_weight_grams=0,
                max_weight_grams=1000,
                amount=450,
                currency="EUR",
            ),
        )
        [light] = [
            r
            for r in await service.list_rates(s, cfg.standard_id)
            if r.currency == "USD" and r.min_weight_grams == 0
        ]
        await service.update_rate(s, light.id, RateUpdate(amount=550, clear_free_over=True))
        # None for a required column is ignored, not written.
        renamed = await service.update_zone(s, cfg.zone_id, ZoneUpdate(name=None, postal_code_patterns=None))
        assert renamed.name == zone.name
    assert (await acts.quote(quote_input(cfg, 500, 9000))).amount == 550  # no longer free
    eur = quote_input(cfg, 500, 100).model_copy(update={"currency": "EUR"})
    assert (await acts.quote(eur)).amount == 450

    async with db() as s, s.begin():
        await service.update_method(s, cfg.standard_id, MethodUpdate(is_active=False))
    with pytest.raises(ApplicationError) as inactive:
        await acts.quote(quote_input(cfg, 500, 100))
    assert inactive.value.type == "ShippingMethodUnavailable"
    with pytest.raises(ValidationError):
        RateIn(
            method_id=cfg.standard_id, min_weight_grams=1000, max_weight_grams=1000, amount=1, currency="USD"
        )
    with pytest.raises(ValidationError):
        ZoneIn(name="bad", countries=["usa"])
    with pytest.raises(ValidationError):
        ZoneIn(name="bad", countries=["US"], postal_code_patterns=["[unclosed"])
