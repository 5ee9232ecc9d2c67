"""Tables of ``shipping_db``. Only the shipping service reads or writes them.

Cross-service references (``shipments.order_id``, ``shipments.user_id``) are plain UUID columns
without foreign keys; foreign keys inside shipping_db always.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, CHAR, JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from core.ledger import ledger_table


class ShippingModel(SQLModel, registry=registry()):
    """Base class of every shipping_db table; its metadata is what migrations/shipping builds."""


metadata = ShippingModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)


class ServiceLevel(StrEnum):
    STANDARD = "standard"
    EXPRESS = "express"
    OVERNIGHT = "overnight"


class Direction(StrEnum):
    OUTBOUND = "outbound"
    RETURN = "return"


class ShipmentStatus(StrEnum):
    PENDING = "pending"
    LABEL_PURCHASED = "label_purchased"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    RETURNED_TO_SENDER = "returned_to_sender"
    CANCELLED = "cancelled"


def _in(values: type[StrEnum]) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


def _id() -> Any:
    return Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))


def _created_at() -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def _updated_at() -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class Carrier(ShippingModel, table=True):
    """A carrier we buy labels from; ``settings`` holds per-carrier options (e.g. the warehouse address)."""

    __tablename__ = "carriers"
    __table_args__ = (UniqueConstraint("code", name="uq_carriers_code"),)

    id: uuid.UUID = _id()
    code: str = Field(sa_column=Column(String(50), nullable=False))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    # e.g. "https://track.example/{tracking_number}"
    tracking_url_template: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    is_active: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, server_default=text("true"))
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    )
    created_at: datetime | None = _created_at()
    updated_at: datetime | None = _updated_at()


class ShippingZone(ShippingModel, table=True):
    """A set of destination countries (optionally narrowed by postal-code regexes).

    An empty ``countries`` array makes the zone a catch-all ("rest of world"): it serves every
    country that no zone names explicitly.
    """

    __tablename__ = "shipping_zones"
    __table_args__ = (
        UniqueConstraint("name", name="uq_shipping_zones_name"),
        # quote / available methods: zones whose countries contain the address country (countries @> ARRAY[:c])
        Index("ix_shipping_zones_countries", "countries", postgresql_using="gin"),
    )

    id: uuid.UUID = _id()
    name: str = Field(sa_column=Column(String(100), nullable=False))
    countries: list[str] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(CHAR(2)), nullable=False, server_default=text("'{}'::char(2)[]")),
    )
    # Python regular expressions, matched (fullmatch) against the normalised postal code.
    postal_code_patterns: list[str] | None = Field(default=None, sa_column=Column(ARRAY(Text), nullable=True))
    is_active: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, server_default=text("true"))
    )
    created_at: datetime | None = _created_at()
    updated_at: datetime | None = _updated_at()


class ShippingMethod(ShippingModel, table=True):
    """A carrier service level offered in one zone (e.g. "US standard")."""

    __tablename__ = "shipping_methods"
    __table_args__ = (
        UniqueConstraint("zone_id", "code", name="uq_shipping_methods_zone_code"),
        CheckConstraint(f"service_level IN ({_in(ServiceLevel)})", name="ck_shipping_methods_service_level"),
        CheckConstraint(
            "min_delivery_days >= 0 AND max_delivery_days >= min_delivery_days",
            name="ck_shipping_methods_delivery_days",
        ),
        # admin listing / FK lookups: methods of a carrier
        Index("ix_shipping_methods_carrier_id", "carrier_id"),
    )

    id: uuid.UUID = _id()
    carrier_id: uuid.UUID = Field(sa_column=Column(Uuid, ForeignKey("carriers.id"), nullable=False))
    zone_id: uuid.UUID = Field(sa_column=Column(Uuid, ForeignKey("shipping_zones.id"), nullable=False))
    code: str = Field(sa_column=Column(String(50), nullable=False))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    service_level: str = Field(sa_column=Column(String(20), nullable=False))
    min_delivery_days: int = Field(sa_column=Column(Integer, nullable=False))
    max_delivery_days: int = Field(sa_column=Column(Integer, nullable=False))
    is_active: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, server_default=text("true"))
    )
    created_at: datetime | None = _created_at()
    updated_at: datetime | None = _updated_at()


class ShippingRate(ShippingModel, table=True):
    """A price for a method within a weight band ``[min_weight_grams, max_weight_grams)`` and from a
    subtotal on; free when the subtotal reaches ``free_over_amount``."""

    __tablename__ = "shipping_rates"
    __table_args__ = (
        CheckConstraint(
            "min_weight_grams >= 0 AND max_weight_grams > min_weight_grams",
            name="ck_shipping_rates_weight_range",
        ),
        CheckConstraint(
            "min_subtotal_amount >= 0 AND amount >= 0 AND (free_over_amount IS NULL OR free_over_amount >= 0)",
            name="ck_shipping_rates_amounts",
        ),
        # quote: the band of a method containing a weight (method_id = :m AND min_weight_grams <= :w)
        Index("ix_shipping_rates_method_weight", "method_id", "min_weight_grams"),
    )

    id: uuid.UUID = _id()
    method_id: uuid.UUID = Field(sa_column=Column(Uuid, ForeignKey("shipping_methods.id"), nullable=False))
    min_weight_grams: int = Field(sa_column=Column(Integer, nullable=False))
    max_weight_grams: int = Field(sa_column=Column(Integer, nullable=False))
    min_subtotal_amount: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0"))
    )
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(sa_column=Column(CHAR(3), nullable=False))
    free_over_amount: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: datetime | None = _created_at()
    updated_at: datetime | None = _updated_at()


class Shipment(ShippingModel, table=True):
    """One parcel of an order, outbound (to the shopper) or return (back to the warehouse)."""

    __tablename__ = "shipments"
    __table_args__ = (
        UniqueConstraint("order_id", "direction", name="uq_shipments_order_direction"),
        UniqueConstraint("tracking_number", name="uq_shipments_tracking_number"),
        CheckConstraint(f"direction IN ({_in(Direction)})", name="ck_shipments_direction"),
        CheckConstraint(f"status IN ({_in(ShipmentStatus)})", name="ck_shipments_status"),
        CheckConstraint("weight_grams > 0", name="ck_shipments_weight"),
        CheckConstraint("cost_amount IS NULL OR cost_amount >= 0", name="ck_shipments_cost_amount"),
        # "my shipments" and support lookups by shopper, newest first
        Index("ix_shipments_user_created", "user_id", "created_at"),
        # stall detection / support dashboards: shipments in flight by status and age
        Index(
            "ix_shipments_open_status_updated",
            "status",
            "updated_at",
            postgresql_where=text("status NOT IN ('delivered', 'cancelled', 'returned_to_sender')"),
        ),
        # FK lookups
        Index("ix_shipments_method_id", "method_id"),
        Index("ix_shipments_carrier_id", "carrier_id"),
    )

    id: uuid.UUID = _id()
    order_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, comment="order_db orders.id"))
    user_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, comment="auth_db users.id"))
    direction: str = Field(sa_column=Column(String(10), nullable=False))
    method_id: uuid.UUID = Field(sa_column=Column(Uuid, ForeignKey("shipping_methods.id"), nullable=False))
    carrier_id: uuid.UUID = Field(sa_column=Column(Uuid, ForeignKey("carriers.id"), nullable=False))
    status: str = Field(
        default=ShipmentStatus.PENDING,
        sa_column=Column(String(30), nullable=False, server_default=text("'pending'")),
    )
    tracking_number: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    label_id: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    label_url: str | None = Field(default=None, sa_column=Column(String(1000), nullable=True))
    cost_amount: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    currency: str | None = Field(default=None, sa_column=Column(CHAR(3), nullable=True))
    # the shopper's address as it was when the shipment was created
    address: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    items: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    )
    weight_grams: int = Field(sa_column=Column(Integer, nullable=False))
    shipped_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    delivered_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    cancelled_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default=text("1")))
    created_at: datetime | None = _created_at()
    updated_at: datetime | None = _updated_at()


class ShipmentTracking(ShippingModel, table=True):
    """One carrier tracking event; the carrier's event id dedupes redelivered webhooks."""

    __tablename__ = "shipment_tracking"
    __table_args__ = (
        UniqueConstraint("carrier_event_id", name="uq_shipment_tracking_carrier_event_id"),
        # tracking history of a shipment, in order
        Index("ix_shipment_tracking_shipment_occurred", "shipment_id", "occurred_at"),
    )

    id: uuid.UUID = _id()
    shipment_id: uuid.UUID = Field(sa_column=Column(Uuid, ForeignKey("shipments.id"), nullable=False))
    carrier_event_id: str = Field(sa_column=Column(String(200), nullable=False))
    status: str = Field(sa_column=Column(String(30), nullable=False, comment="carrier status as reported"))
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    location: str | None = Field(default=None, sa_column=Column(String(300), nullable=True))
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    received_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    # What this event did to the shipment when it was first recorded (replayed for duplicates).
    first_scan: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    delivered: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
