"""Demo shipping configuration: one sandbox carrier, three zones, their methods and weight-band rates.

``load_demo_shipping(session)`` is idempotent (it finds existing rows by their natural keys: carrier
code, zone name, zone + method code; a method's rates are inserted only while it has none) and
returns the method ids, keyed ``"<zone key>:<method code>"``: ``US:standard``, ``US:express``,
``US:overnight``, ``EU:standard``, ``EU:express``, ``WORLD:standard``, ``WORLD:express``.

The carrier sandbox ships from a US warehouse and offers no overnight service abroad, so overnight
exists only in the domestic zone. Prices are in USD cents; domestic standard shipping is free from a
subtotal of 5000 (``subtotal >= free_over_amount``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.shipping.models import Carrier, ShippingMethod, ShippingRate, ShippingZone

CARRIER_CODE = "sandbox-carrier"
CURRENCY = "USD"
# Weight bands in grams, [min, max): the carrier sandbox takes parcels up to 70 kg.
BANDS = ((0, 1_000), (1_000, 5_000), (5_000, 20_000), (20_000, 70_000))
EU_COUNTRIES = ("AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE").split()


@dataclass(frozen=True)
class DemoMethod:
    code: str
    name: str
    service_level: str
    min_days: int
    max_days: int
    prices: tuple[int, ...]  # one per band (fewer: heavier bands not offered)
    free_over_amount: int | None = None


@dataclass(frozen=True)
class DemoZone:
    key: str
    name: str
    countries: tuple[str, ...]  # empty: rest of world
    methods: tuple[DemoMethod, ...]


DEMO_ZONES = (
    DemoZone(
        "US",
        "Domestic (US)",
        ("US",),
        (
            DemoMethod("standard", "Standard (3-5 days)", "standard", 3, 5, (599, 899, 1499, 2999), 5000),
            DemoMethod("express", "Express (1-2 days)", "express", 1, 2, (1299, 1799, 2799, 4999)),
            DemoMethod("overnight", "Overnight", "overnight", 1, 1, (2499, 3499, 5499)),
        ),
    ),
    DemoZone(
        "EU",
        "European Union",
        tuple(EU_COUNTRIES),
        (
            DemoMethod(
                "standard", "International standard (5-10 days)", "standard", 5, 10, (1499, 2499, 4499, 8999)
            ),
            DemoMethod(
                "express", "International express (2-4 days)", "express", 2, 4, (2999, 4499, 7999, 12999)
            ),
        ),
    ),
    DemoZone(
        "WORLD",
        "Rest of world",
        (),
        (
            DemoMethod(
                "standard", "International standard (7-15 days)", "standard", 7, 15, (1999, 3499, 5999, 11999)
            ),
            DemoMethod(
                "express", "International express (3-6 days)", "express", 3, 6, (3999, 5999, 9999, 15999)
            ),
        ),
    ),
)


async def _carrier(session: AsyncSession) -> Carrier:
    carrier = (await session.scalars(select(Carrier).where(col(Carrier.code) == CARRIER_CODE))).first()
    if carrier is None:
        carrier = Carrier(
            code=CARRIER_CODE,
            name="Sandbox Carrier",
            tracking_url_template="https://track.sandbox-carrier.invalid/{tracking_number}",
            settings={
                "warehouse": {
                    "country": "US",
                    "postal_code": "10001",
                    "city": "New York",
                    "name": "sagashop warehouse",
                }
            },
        )
        session.add(carrier)
        await session.flush()
    return carrier


async def _zone(session: AsyncSession, spec: DemoZone) -> ShippingZone:
    zone = (await session.scalars(select(ShippingZone).where(col(ShippingZone.name) == spec.name))).first()
    if zone is None:
        zone = ShippingZone(name=spec.name, countries=list(spec.countries))
        session.add(zone)
        await session.flush()
    return zone


async def _method(
    session: AsyncSession, carrier: Carrier, zone: ShippingZone, spec: DemoMethod
) -> ShippingMethod:
    method = (
        await session.scalars(
            select(ShippingMethod).where(
                col(ShippingMethod.zone_id) == zone.id, col(ShippingMethod.code) == spec.code
            )
        )
    ).first()
    if method is None:
        method = ShippingMethod(
            carrier_id=carrier.id,
            zone_id=zone.id,
            code=spec.code,
            name=spec.name,
            service_level=spec.service_level,
            min_delivery_days=spec.min_days,
            max_delivery_days=spec.max_days,
        )
        session.add(method)
        await session.flush()
    has_rates = (
        await session.scalars(
            select(col(ShippingRate.id)).where(col(ShippingRate.method_id) == method.id).limit(1)
        )
    ).first()
    if has_rates is None:
        for (low, high), price in zip(BANDS, spec.prices, strict=False):
            session.add(
                ShippingRate(
                    method_id=method.id,
                    min_weight_grams=low,
                    max_weight_grams=high,
                    amount=price,
                    currency=CURRENCY,
                    free_over_amount=spec.free_over_amount,
                )
            )
        await session.flush()
    return method


async def load_demo_shipping(session: AsyncSession) -> dict[str, uuid.UUID]:
    """Create (or find) the demo configuration; the caller commits."""
    carrier = await _carrier(session)
    ids: dict[str, uuid.UUID] = {}
    for zone_spec in DEMO_ZONES:
        zone = await _zone(session, zone_spec)
        for method_spec in zone_spec.methods:
            method = await _method(session, carrier, zone, method_spec)
            ids[f"{zone_spec.key}:{method_spec.code}"] = method.id
    return ids
