"""Rules of the shipping service: zones, quotes, shipments, labels and tracking. Never commits.

Quote rules
  * zone: the active zones naming the address's country (or catch-all zones, whose ``countries`` is
    empty) whose postal-code patterns, if any, match the postal code. The most specific one wins: a
    zone naming the country beats a catch-all, a zone with matching postal patterns beats one
    without, fewer countries beat more. No zone: ``AddressNotServed``.
  * the chosen method must be active, its carrier active (else ``ShippingMethodUnavailable``), and
    it must belong to that zone (else ``AddressNotServed``).
  * rate: the method's rate in the request currency whose weight band ``[min, max)`` holds the
    weight, among subtotal tiers the highest ``min_subtotal_amount`` reached (none:
    ``NoRateAvailable``). Free (amount 0) when ``subtotal_amount >= free_over_amount``.

Tracking rules
  * a carrier event id is recorded once; a redelivered event answers ``duplicate=True`` with the
    flags the event had the first time;
  * statuses only move forward along pending -> label_purchased -> picked_up -> in_transit ->
    out_for_delivery -> delivered; ``exception`` can interrupt any non-final status and the parcel
    resumes from where it was; delivered / returned_to_sender / cancelled are final. A late or
    out-of-order event is kept in the history but does not move the status back;
  * ``first_scan``: the event that first took the parcel past the pre-pickup states (sets
    ``shipped_at``), even when the ``picked_up`` event itself was lost; ``delivered``: the event
    that made the shipment delivered (sets ``delivered_at``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.shipping import repository as repo
from services.shipping.carrier import Address as CarrierAddress
from services.shipping.carrier import Label
from services.shipping.errors import (
    AddressNotServed,
    CarrierNotFound,
    DuplicateShippingConfig,
    InvalidShipmentState,
    InvalidShippingConfig,
    MethodNotFound,
    NoRateAvailable,
    RateNotFound,
    ShipmentAlreadyExists,
    ShipmentNotFound,
    ShippingMethodUnavailable,
    ZoneNotFound,
)
from services.shipping.models import (
    Carrier,
    Direction,
    Shipment,
    ShipmentStatus,
    ShipmentTracking,
    ShippingMethod,
    ShippingRate,
    ShippingZone,
)
from services.shipping.schemas import (
    CarrierIn,
    CarrierUpdate,
    CarrierView,
    MethodIn,
    MethodUpdate,
    MethodView,
    Quote,
    QuoteAddress,
    QuoteRequest,
    RateIn,
    RateUpdate,
    RateView,
    ShipmentItem,
    ShipmentView,
    ShippingAddress,
    TrackingOutcome,
    ZoneIn,
    ZoneUpdate,
    ZoneView,
)

S = ShipmentStatus

# Where return parcels go when the carrier's settings name no "warehouse" address.
DEFAULT_WAREHOUSE = CarrierAddress(
    country="US", postal_code="10001", city="New York", name="sagashop warehouse"
)

# Forward order of the normal life of a parcel.
PROGRESS: dict[str, int] = {
    S.PENDING: 0,
    S.LABEL_PURCHASED: 1,
    S.PICKED_UP: 2,
    S.IN_TRANSIT: 3,
    S.OUT_FOR_DELIVERY: 4,
    S.DELIVERED: 5,
}
FINAL = frozenset({S.DELIVERED, S.RETURNED_TO_SENDER, S.CANCELLED})
PICKED_UP_RANK = PROGRESS[S.PICKED_UP]
# The carrier's words for our statuses.
FROM_CARRIER: dict[str, str] = {"label_created": S.LABEL_PURCHASED, "voided": S.CANCELLED}


def normalise_postal_code(postal_code: str) -> str:
    return " ".join(postal_code.upper().split())


# --------------------------------------------------------------------------------------------
# Zones and quotes


def _zone_matches(zone: ShippingZone, postal_code: str) -> bool:
    if not zone.postal_code_patterns:
        return True
    return any(re.fullmatch(p, postal_code) for p in zone.postal_code_patterns)


def choose_zone(zones: Sequence[ShippingZone], postal_code: str) -> ShippingZone | None:
    """The most specific zone matching ``postal_code`` among zones already filtered by country."""
    code = normalise_postal_code(postal_code)
    candidates = [z for z in zones if _zone_matches(z, code)]
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda z: (not z.countries, not z.postal_code_patterns, len(z.countries), z.name),
    )


async def resolve_zone(session: AsyncSession, address: QuoteAddress) -> ShippingZone:
    zone = choose_zone(await repo.zones_for_country(session, address.country), address.postal_code)
    if zone is None:
        raise AddressNotServed(
            f"we do not ship to {address.postal_code} ({address.country})",
            country=address.country,
            postal_code=address.postal_code,
        )
    return zone


async def _usable_method(
    session: AsyncSession, method_id: uuid.UUID, zone: ShippingZone
) -> tuple[ShippingMethod, Carrier]:
    found = await repo.method_and_carrier(session, method_id)
    if found is None or not found[0].is_active or not found[1].is_active:
        raise ShippingMethodUnavailable(
            f"shipping method {method_id} does not exist or is not offered", method_id=str(method_id)
        )
    method, _ = found
    if method.zone_id != zone.id:
        raise AddressNotServed(
            f"shipping method {method.code!r} does not serve {zone.name!r}",
            method_id=str(method_id),
            zone=zone.name,
        )
    return found


def _quote(method: ShippingMethod, carrier: Carrier, rate: ShippingRate, subtotal_amount: int) -> Quote:
    free = rate.free_over_amount is not None and subtotal_amount >= rate.free_over_amount
    return Quote(
        amount=0 if free else rate.amount,
        currency=rate.currency,
        method_id=method.id,
        method_code=method.code,
        method_name=method.name,
        carrier_code=carrier.code,
        service_level=method.service_level,
        estimated_days=method.max_delivery_days,
        min_delivery_days=method.min_delivery_days,
        max_delivery_days=method.max_delivery_days,
        free_shipping=free,
    )


async def quote(session: AsyncSession, req: QuoteRequest) -> Quote:
    zone = await resolve_zone(session, req.address)
    method, carrier = await _usable_method(session, req.shipping_method_id, zone)
    rate = await repo.find_rate(
        session,
        method_id=method.id,
        weight_grams=req.weight_grams,
        subtotal_amount=req.subtotal_amount,
        currency=req.currency,
    )
    if rate is None:
        raise NoRateAvailable(
            f"{method.name} has no {req.currency} rate for {req.weight_grams} g",
            method_id=str(method.id),
            weight_grams=req.weight_grams,
            currency=req.currency,
        )
    return _quote(method, carrier, rate, req.subtotal_amount)


async def available_methods(
    session: AsyncSession, *, address: QuoteAddress, weight_grams: int, subtotal_amount: int, currency: str
) -> list[Quote]:
    """Every active method of the address's zone with a rate for this parcel, cheapest first."""
    zone = await resolve_zone(session, address)
    quotes = []
    for method, carrier in await repo.active_methods_in_zone(session, zone.id):
        rate = await repo.find_rate(
            session,
            method_id=method.id,
            weight_grams=weight_grams,
            subtotal_amount=subtotal_amount,
            currency=currency,
        )
        if rate is not None:
            quotes.append(_quote(method, carrier, rate, subtotal_amount))
    return sorted(quotes, key=lambda q: (q.amount, q.max_delivery_days, q.method_code))


# --------------------------------------------------------------------------------------------
# Shipments and labels


async def get_shipment(session: AsyncSession, shipment_id: uuid.UUID) -> ShipmentView:
    shipment = await repo.get_shipment(session, shipment_id)
    if shipment is None:
        raise ShipmentNotFound(f"no shipment {shipment_id}", shipment_id=str(shipment_id))
    return ShipmentView.model_validate(shipment)


async def tracking_history(session: AsyncSession, shipment_id: uuid.UUID) -> Sequence[ShipmentTracking]:
    return await repo.tracking_history(session, shipment_id)


async def create_shipment(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    direction: str,
    method_id: uuid.UUID,
    address: ShippingAddress,
    weight_grams: int,
    items: Sequence[ShipmentItem] = (),
) -> ShipmentView:
    """A pending shipment; one per order and direction. The method must serve the shopper's address."""
    zone = await resolve_zone(session, address)
    method, carrier = await _usable_method(session, method_id, zone)
    inserted = await repo.insert_ignoring_conflict(
        session,
        Shipment,
        {
            "id": shipment_id,
            "order_id": order_id,
            "user_id": user_id,
            "direction": direction,
            "method_id": method.id,
            "carrier_id": carrier.id,
            "status": S.PENDING,
            "address": address.model_dump(mode="json", exclude_none=True),
            "items": [i.model_dump(mode="json", exclude_none=True) for i in items],
            "weight_grams": weight_grams,
        },
    )
    if not inserted:
        existing = await repo.get_shipment_by_order(session, order_id, direction)
        if existing is not None and existing.id == shipment_id:
            return ShipmentView.model_validate(existing)
        raise ShipmentAlreadyExists(
            f"order {order_id} already has an {direction} shipment",
            order_id=str(order_id),
            direction=direction,
            shipment_id=str(existing.id) if existing else str(shipment_id),
        )
    return await get_shipment(session, shipment_id)


@dataclass(frozen=True)
class LabelPlan:
    """What the carrier needs to sell a label for a pending shipment."""

    shipment_id: uuid.UUID
    reference: str
    service_level: str
    origin: CarrierAddress | None  # None: the carrier's default (our warehouse)
    destination: CarrierAddress
    weight_grams: int
    direction: str


def _carrier_address(data: dict[str, Any]) -> CarrierAddress:
    return CarrierAddress.model_validate(data)


async def label_plan(session: AsyncSession, shipment_id: uuid.UUID) -> LabelPlan:
    shipment = await repo.get_shipment(session, shipment_id)
    if shipment is None:
        raise ShipmentNotFound(f"no shipment {shipment_id}", shipment_id=str(shipment_id))
    if shipment.status != S.PENDING:
        raise InvalidShipmentState(
            f"shipment {shipment_id} is {shipment.status}; a label is bought only for a pending shipment",
            status=shipment.status,
        )
    found = await repo.method_and_carrier(session, shipment.method_id)
    assert found is not None  # foreign key
    method, carrier = found
    warehouse_data = carrier.settings.get("warehouse")
    warehouse = _carrier_address(warehouse_data) if isinstance(warehouse_data, dict) else None
    customer = _carrier_address(shipment.address)
    origin: CarrierAddress | None
    if shipment.direction == Direction.RETURN:
        origin, destination = customer, warehouse or DEFAULT_WAREHOUSE
    else:
        origin, destination = warehouse, customer
    return LabelPlan(
        shipment_id=shipment.id,
        reference=str(shipment.id),
        service_level=method.service_level,
        origin=origin,
        destination=destination,
        weight_grams=shipment.weight_grams,
        direction=shipment.direction,
    )


async def attach_label(session: AsyncSession, shipment_id: uuid.UUID, label: Label) -> ShipmentView:
    """Record the bought label: pending -> label_purchased."""
    updated = await repo.update_shipment_if(
        session,
        shipment_id,
        statuses=[S.PENDING],
        values={
            "status": S.LABEL_PURCHASED,
            "tracking_number": label.tracking_number,
            "label_id": label.label_id,
            "label_url": label.label_url,
            "cost_amount": label.amount,
            "currency": label.currency,
        },
    )
    if not updated:
        current = await get_shipment(session, shipment_id)
        raise InvalidShipmentState(
            f"shipment {shipment_id} is {current.status}; the label cannot be attached", status=current.status
        )
    return await get_shipment(session, shipment_id)


async def cancel_plan(session: AsyncSession, shipment_id: uuid.UUID) -> ShipmentView:
    """The shipment to cancel; refuses once the carrier has the parcel (nothing left to void)."""
    shipment = await get_shipment(session, shipment_id)
    if shipment.status not in (S.PENDING, S.LABEL_PURCHASED, S.CANCELLED):
        raise InvalidShipmentState(
            f"shipment {shipment_id} is {shipment.status}; it can no longer be cancelled",
            status=shipment.status,
        )
    return shipment


async def mark_cancelled(session: AsyncSession, shipment_id: uuid.UUID) -> ShipmentView:
    updated = await repo.update_shipment_if(
        session,
        shipment_id,
        statuses=[S.PENDING, S.LABEL_PURCHASED],
        values={"status": S.CANCELLED, "cancelled_at": func.now()},
    )
    shipment = await get_shipment(session, shipment_id)
    if not updated and shipment.status != S.CANCELLED:
        raise InvalidShipmentState(
            f"shipment {shipment_id} is {shipment.status}; it can no longer be cancelled",
            status=shipment.status,
        )
    return shipment


# --------------------------------------------------------------------------------------------
# Tracking


def next_status(current: str, progress: int, event_status: str) -> str | None:
    """The shipment's new status after an event, or None when the event does not move it."""
    if current in FINAL:
        return None
    if event_status == S.EXCEPTION:
        return None if current == S.EXCEPTION else S.EXCEPTION
    if event_status == S.RETURNED_TO_SENDER:
        return S.RETURNED_TO_SENDER
    rank = PROGRESS.get(event_status)
    if rank is None or rank <= progress:
        return None
    return event_status


async def record_tracking_event(
    session: AsyncSession,
    *,
    carrier_event_id: str,
    tracking_number: str,
    status: str,
    occurred_at: datetime,
    location: str | None = None,
    description: str | None = None,
) -> TrackingOutcome:
    found = await repo.get_shipment_by_tracking(session, tracking_number, for_update=True)
    if found is None:
        raise ShipmentNotFound(
            f"no shipment with tracking number {tracking_number}", tracking_number=tracking_number
        )
    shipment: Shipment = found

    def outcome(*, duplicate: bool, first_scan: bool, delivered: bool, status: str) -> TrackingOutcome:
        return TrackingOutcome(
            shipment_id=shipment.id,
            order_id=shipment.order_id,
            user_id=shipment.user_id,
            direction=shipment.direction,
            duplicate=duplicate,
            first_scan=first_scan,
            delivered=delivered,
            status=status,
        )

    known = await repo.tracking_event(session, carrier_event_id)
    if known is not None:
        return outcome(
            duplicate=True, first_scan=known.first_scan, delivered=known.delivered, status=shipment.status
        )

    mapped = FROM_CARRIER.get(status, status)
    if shipment.status in PROGRESS:
        progress = PROGRESS[shipment.status]
    else:  # exception: resume from the furthest normal status seen so far
        seen = [
            PROGRESS.get(FROM_CARRIER.get(s, s), 0)
            for s in await repo.tracking_statuses(session, shipment.id)
        ]
        progress = max([PROGRESS[S.LABEL_PURCHASED], *seen])
    new = next_status(shipment.status, progress, mapped)
    first_scan = new is not None and shipment.shipped_at is None and PROGRESS.get(new, -1) >= PICKED_UP_RANK
    delivered = new == S.DELIVERED

    inserted = await repo.insert_tracking_event(
        session,
        {
            "id": uuid.uuid4(),
            "shipment_id": shipment.id,
            "carrier_event_id": carrier_event_id,
            "status": status,
            "description": description,
            "location": location,
            "occurred_at": occurred_at,
            "first_scan": first_scan,
            "delivered": delivered,
        },
    )
    if not inserted:  # the same event raced us for another shipment lock holder: it is recorded
        known = await repo.tracking_event(session, carrier_event_id)
        assert known is not None
        return outcome(
            duplicate=True, first_scan=known.first_scan, delivered=known.delivered, status=shipment.status
        )
    if new is None:
        return outcome(duplicate=False, first_scan=False, delivered=False, status=shipment.status)
    values: dict[str, Any] = {"status": new}
    if first_scan:
        values["shipped_at"] = occurred_at
    if delivered:
        values["delivered_at"] = occurred_at
    await repo.update_shipment_if(session, shipment.id, statuses=[shipment.status], values=values)
    return outcome(duplicate=False, first_scan=first_scan, delivered=delivered, status=new)


# --------------------------------------------------------------------------------------------
# Admin configuration (carriers, zones, methods, rates)


def _changes(data: Any, nullable: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The fields an update sets; an explicit None only clears a nullable column."""
    return {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None or k in nullable}


async def _flush_unique(session: AsyncSession, obj: Any, what: str) -> None:
    """Add and flush ``obj`` in a savepoint; a unique violation becomes ``DuplicateShippingConfig``."""
    try:
        async with session.begin_nested():
            session.add(obj)
            await session.flush()
    except IntegrityError as exc:
        raise DuplicateShippingConfig(f"{what} already exists") from exc


async def list_carriers(session: AsyncSession) -> list[CarrierView]:
    rows = await session.scalars(select(Carrier).order_by(col(Carrier.code)))
    return [CarrierView.model_validate(c) for c in rows]


async def create_carrier(session: AsyncSession, data: CarrierIn) -> CarrierView:
    carrier = Carrier(**data.model_dump())
    await _flush_unique(session, carrier, f"carrier {data.code!r}")
    return CarrierView.model_validate(carrier)


async def update_carrier(session: AsyncSession, carrier_id: uuid.UUID, data: CarrierUpdate) -> CarrierView:
    carrier = await session.get(Carrier, carrier_id)
    if carrier is None:
        raise CarrierNotFound(f"no carrier {carrier_id}")
    for name, value in _changes(data, frozenset({"tracking_url_template"})).items():
        setattr(carrier, name, value)
    carrier.updated_at = datetime.now().astimezone()
    await session.flush()
    return CarrierView.model_validate(carrier)


async def list_zones(session: AsyncSession) -> list[ZoneView]:
    rows = await session.scalars(select(ShippingZone).order_by(col(ShippingZone.name)))
    return [ZoneView.model_validate(z) for z in rows]


async def create_zone(session: AsyncSession, data: ZoneIn) -> ZoneView:
    zone = ShippingZone(**data.model_dump())
    await _flush_unique(session, zone, f"zone {data.name!r}")
    return ZoneView.model_validate(zone)


async def update_zone(session: AsyncSession, zone_id: uuid.UUID, data: ZoneUpdate) -> ZoneView:
    zone = await session.get(ShippingZone, zone_id)
    if zone is None:
        raise ZoneNotFound(f"no shipping zone {zone_id}")
    for name, value in _changes(data, frozenset({"postal_code_patterns"})).items():
        setattr(zone, name, value)
    zone.updated_at = datetime.now().astimezone()
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise DuplicateShippingConfig(f"zone {data.name!r} already exists") from exc
    return ZoneView.model_validate(zone)


async def list_methods(session: AsyncSession, zone_id: uuid.UUID | None = None) -> list[MethodView]:
    stmt = select(ShippingMethod).order_by(col(ShippingMethod.zone_id), col(ShippingMethod.code))
    if zone_id is not None:
        stmt = stmt.where(col(ShippingMethod.zone_id) == zone_id)
    return [MethodView.model_validate(m) for m in await session.scalars(stmt)]


async def create_method(session: AsyncSession, data: MethodIn) -> MethodView:
    if await session.get(Carrier, data.carrier_id) is None:
        raise CarrierNotFound(f"no carrier {data.carrier_id}")
    if await session.get(ShippingZone, data.zone_id) is None:
        raise ZoneNotFound(f"no shipping zone {data.zone_id}")
    method = ShippingMethod(**data.model_dump())
    await _flush_unique(session, method, f"method {data.code!r} in this zone")
    return MethodView.model_validate(method)


async def update_method(session: AsyncSession, method_id: uuid.UUID, data: MethodUpdate) -> MethodView:
    method = await session.get(ShippingMethod, method_id)
    if method is None:
        raise MethodNotFound(f"no shipping method {method_id}")
    for name, value in _changes(data).items():
        setattr(method, name, value)
    if method.max_delivery_days < method.min_delivery_days:
        raise InvalidShippingConfig("max_delivery_days must be >= min_delivery_days")
    method.updated_at = datetime.now().astimezone()
    await session.flush()
    return MethodView.model_validate(method)


async def list_rates(session: AsyncSession, method_id: uuid.UUID) -> list[RateView]:
    stmt = (
        select(ShippingRate)
        .where(col(ShippingRate.method_id) == method_id)
        .order_by(
            col(ShippingRate.currency),
            col(ShippingRate.min_subtotal_amount),
            col(ShippingRate.min_weight_grams),
        )
    )
    return [RateView.model_validate(r) for r in await session.scalars(stmt)]


async def create_rate(session: AsyncSession, data: RateIn) -> RateView:
    if await session.get(ShippingMethod, data.method_id) is None:
        raise MethodNotFound(f"no shipping method {data.method_id}")
    clash = await repo.overlapping_rate(
        session,
        method_id=data.method_id,
        currency=data.currency,
        min_subtotal_amount=data.min_subtotal_amount,
        min_weight_grams=data.min_weight_grams,
        max_weight_grams=data.max_weight_grams,
    )
    if clash is not None:
        raise InvalidShippingConfig(
            f"weight band [{data.min_weight_grams}, {data.max_weight_grams}) overlaps rate {clash.id} "
            f"[{clash.min_weight_grams}, {clash.max_weight_grams})",
            rate_id=str(clash.id),
        )
    rate = ShippingRate(**data.model_dump())
    session.add(rate)
    await session.flush()
    return RateView.model_validate(rate)


async def update_rate(session: AsyncSession, rate_id: uuid.UUID, data: RateUpdate) -> RateView:
    rate = await session.get(ShippingRate, rate_id)
    if rate is None:
        raise RateNotFound(f"no shipping rate {rate_id}")
    if data.amount is not None:
        rate.amount = data.amount
    if data.clear_free_over:
        rate.free_over_amount = None
    elif data.free_over_amount is not None:
        rate.free_over_amount = data.free_over_amount
    rate.updated_at = datetime.now().astimezone()
    await session.flush()
    return RateView.model_validate(rate)


async def delete_rate(session: AsyncSession, rate_id: uuid.UUID) -> None:
    result = await session.execute(
        delete(ShippingRate).where(col(ShippingRate.id) == rate_id).returning(col(ShippingRate.id))
    )
    if result.first() is None:
        raise RateNotFound(f"no shipping rate {rate_id}")
