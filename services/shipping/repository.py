"""All SQL of the shipping service. Functions take the caller's ``AsyncSession`` and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from core.errors import IdempotencyKeyReused
from core.ledger import request_fingerprint
from services.shipping.models import (
    Carrier,
    Shipment,
    ShipmentTracking,
    ShippingMethod,
    ShippingRate,
    ShippingZone,
    ledger,
)

R = TypeVar("R", bound=BaseModel)


async def peek_ledger(
    session: AsyncSession, *, key: str, operation: str, request: BaseModel, result_type: type[R]
) -> R | None:
    """The recorded result of ``key`` if that operation already completed (same checks as run_once)."""
    row = (
        await session.execute(
            select(ledger.c.operation, ledger.c.request_hash, ledger.c.result).where(ledger.c.key == key)
        )
    ).first()
    if row is None or row.result is None:
        return None
    if row.operation != operation or row.request_hash != request_fingerprint(request):
        raise IdempotencyKeyReused(
            f"idempotency key {key!r} was already used for a different {row.operation} request", key=key
        )
    return result_type.model_validate(row.result)


# -- configuration ------------------------------------------------------------------------------


async def zones_for_country(session: AsyncSession, country: str) -> Sequence[ShippingZone]:
    """Active zones naming ``country`` (GIN ``countries @> ARRAY[..]``) plus the catch-all zones."""
    stmt = select(ShippingZone).where(
        col(ShippingZone.is_active).is_(True),
        or_(
            col(ShippingZone.countries).contains([country]),
            func.cardinality(col(ShippingZone.countries)) == 0,
        ),
    )
    return (await session.scalars(stmt)).all()


async def method_and_carrier(
    session: AsyncSession, method_id: uuid.UUID
) -> tuple[ShippingMethod, Carrier] | None:
    row = (
        await session.execute(
            select(ShippingMethod, Carrier)
            .join(Carrier, col(Carrier.id) == col(ShippingMethod.carrier_id))
            .where(col(ShippingMethod.id) == method_id)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def active_methods_in_zone(
    session: AsyncSession, zone_id: uuid.UUID
) -> Sequence[tuple[ShippingMethod, Carrier]]:
    rows = await session.execute(
        select(ShippingMethod, Carrier)
        .join(Carrier, col(Carrier.id) == col(ShippingMethod.carrier_id))
        .where(
            col(ShippingMethod.zone_id) == zone_id,
            col(ShippingMethod.is_active).is_(True),
            col(Carrier.is_active).is_(True),
        )
        .order_by(col(ShippingMethod.max_delivery_days).desc(), col(ShippingMethod.code))
    )
    return [(m, c) for m, c in rows]


async def find_rate(
    session: AsyncSession, *, method_id: uuid.UUID, weight_grams: int, subtotal_amount: int, currency: str
) -> ShippingRate | None:
    """The band containing the weight; among subtotal tiers the highest one reached."""
    stmt = (
        select(ShippingRate)
        .where(
            col(ShippingRate.method_id) == method_id,
            col(ShippingRate.currency) == currency,
            col(ShippingRate.min_weight_grams) <= weight_grams,
            col(ShippingRate.max_weight_grams) > weight_grams,
            col(ShippingRate.min_subtotal_amount) <= subtotal_amount,
        )
        .order_by(col(ShippingRate.min_subtotal_amount).desc(), col(ShippingRate.min_weight_grams).desc())
        .limit(1)
    )
    return (await session.scalars(stmt)).first()


async def overlapping_rate(
    session: AsyncSession,
    *,
    method_id: uuid.UUID,
    currency: str,
    min_subtotal_amount: int,
    min_weight_grams: int,
    max_weight_grams: int,
) -> ShippingRate | None:
    stmt = select(ShippingRate).where(
        col(ShippingRate.method_id) == method_id,
        col(ShippingRate.currency) == currency,
        col(ShippingRate.min_subtotal_amount) == min_subtotal_amount,
        col(ShippingRate.min_weight_grams) < max_weight_grams,
        col(ShippingRate.max_weight_grams) > min_weight_grams,
    )
    return (await session.scalars(stmt.limit(1))).first()


async def insert_ignoring_conflict(session: AsyncSession, model: type[Any], values: dict[str, Any]) -> bool:
    """INSERT .. ON CONFLICT DO NOTHING; True when the row was inserted."""
    result = await session.execute(
        insert(model).values(**values).on_conflict_do_nothing().returning(model.id)
    )
    return result.first() is not None


# -- shipments ----------------------------------------------------------------------------------


async def get_shipment(
    session: AsyncSession, shipment_id: uuid.UUID, *, for_update: bool = False
) -> Shipment | None:
    stmt = select(Shipment).where(col(Shipment.id) == shipment_id).execution_options(populate_existing=True)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).first()


async def get_shipment_by_tracking(
    session: AsyncSession, tracking_number: str, *, for_update: bool = False
) -> Shipment | None:
    stmt = (
        select(Shipment)
        .where(col(Shipment.tracking_number) == tracking_number)
        .execution_options(populate_existing=True)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).first()


async def get_shipment_by_order(
    session: AsyncSession, order_id: uuid.UUID, direction: str
) -> Shipment | None:
    stmt = select(Shipment).where(col(Shipment.order_id) == order_id, col(Shipment.direction) == direction)
    return (await session.scalars(stmt)).first()


async def update_shipment_if(
    session: AsyncSession, shipment_id: uuid.UUID, *, statuses: Sequence[str], values: dict[str, Any]
) -> bool:
    """Update the shipment only while its status is one of ``statuses`` (bumps version)."""
    result = await session.execute(
        update(Shipment)
        .where(col(Shipment.id) == shipment_id, col(Shipment.status).in_(list(statuses)))
        .values(**values, version=col(Shipment.version) + 1, updated_at=func.now())
        .returning(col(Shipment.id))
        .execution_options(synchronize_session=False)
    )
    return result.first() is not None


async def tracking_event(session: AsyncSession, carrier_event_id: str) -> ShipmentTracking | None:
    stmt = select(ShipmentTracking).where(col(ShipmentTracking.carrier_event_id) == carrier_event_id)
    return (await session.scalars(stmt)).first()


async def tracking_statuses(session: AsyncSession, shipment_id: uuid.UUID) -> list[str]:
    stmt = select(col(ShipmentTracking.status)).where(col(ShipmentTracking.shipment_id) == shipment_id)
    return list((await session.scalars(stmt)).all())


async def insert_tracking_event(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the event unless its carrier event id is known (a redelivered webhook): True if inserted."""
    result = await session.execute(
        insert(ShipmentTracking)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[ShipmentTracking.carrier_event_id])
        .returning(col(ShipmentTracking.id))
    )
    return result.first() is not None


async def tracking_history(session: AsyncSession, shipment_id: uuid.UUID) -> Sequence[ShipmentTracking]:
    stmt = (
        select(ShipmentTracking)
        .where(col(ShipmentTracking.shipment_id) == shipment_id)
        .order_by(col(ShipmentTracking.occurred_at), col(ShipmentTracking.received_at))
    )
    return (await session.scalars(stmt)).all()
