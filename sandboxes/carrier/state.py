"""The carrier sandbox's rules and state: rates, labels and tracking.

Pure logic, no I/O (see ``sandboxes.psp.state`` for the conventions). Prices are deterministic:
a zone from a distance proxy (same country? same postal prefix?) and the weight in started kg.
A postal code starting with ``000`` is an address the carrier does not serve.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl

from sandboxes import Problem, isoformat, new_id

Emit = Callable[[str, str, dict[str, Any]], None]

ServiceLevel = Literal["standard", "express", "overnight"]
Direction = Literal["outbound", "return"]
TrackingStatus = Literal[
    "label_created",
    "picked_up",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "exception",
    "returned_to_sender",
]
LabelStatus = Literal[
    "label_created",
    "picked_up",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "exception",
    "returned_to_sender",
    "voided",
]

# The normal life of a parcel, one ``advance`` per step.
PROGRESSION: tuple[TrackingStatus, ...] = (
    "label_created",
    "picked_up",
    "in_transit",
    "out_for_delivery",
    "delivered",
)
TERMINAL = frozenset({"delivered", "returned_to_sender", "voided"})
UNSERVICEABLE_PREFIX = "000"
MAX_WEIGHT_GRAMS = 70_000


class Tariff(BaseModel):
    base: int  # minor units
    per_kg: int  # minor units per started kg
    days: tuple[int, int, int, int | None]  # estimated days by zone; None: not offered in that zone


TARIFFS: dict[ServiceLevel, Tariff] = {
    "standard": Tariff(base=495, per_kg=120, days=(2, 3, 5, 10)),
    "express": Tariff(base=995, per_kg=220, days=(1, 2, 2, 4)),
    "overnight": Tariff(base=1995, per_kg=380, days=(1, 1, 1, None)),
}
ZONE_PERCENT = (100, 125, 150, 300)


class Address(BaseModel):
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    postal_code: str = Field(min_length=1, max_length=16)
    city: str | None = Field(default=None, max_length=100)
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)


class RatesRequest(BaseModel):
    origin: Address
    destination: Address
    weight_grams: int = Field(gt=0, le=MAX_WEIGHT_GRAMS)
    service_level: ServiceLevel | None = None


class LabelRequest(BaseModel):
    reference: str = Field(min_length=1, max_length=200)
    service_level: ServiceLevel
    destination: Address
    origin: Address | None = None  # default: the sandbox's warehouse address
    weight_grams: int = Field(gt=0, le=MAX_WEIGHT_GRAMS)
    webhook_url: HttpUrl | None = None
    direction: Direction = "outbound"


class AdvanceRequest(BaseModel):
    event: Literal["exception", "returned_to_sender"] | None = None


class TrackingEvent(BaseModel):
    status: TrackingStatus
    occurred_at: str
    location: str
    description: str


class LabelRecord(BaseModel):
    label_id: str
    tracking_number: str
    label_url: str
    reference: str
    direction: Direction
    service_level: ServiceLevel
    amount: int
    currency: str
    status: LabelStatus
    origin: Address
    destination: Address
    weight_grams: int
    estimated_days: int
    webhook_url: str | None = None
    created_at: str
    events: list[TrackingEvent] = Field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"events"})

    def tracking(self) -> dict[str, Any]:
        return {
            "tracking_number": self.tracking_number,
            "label_id": self.label_id,
            "reference": self.reference,
            "direction": self.direction,
            "status": self.status,
            "events": [e.model_dump() for e in self.events],
        }


def _normalise(postal_code: str) -> str:
    return postal_code.replace(" ", "").replace("-", "").upper()


def zone(origin: Address, destination: Address) -> int:
    """0 same area, 1 same region, 2 same country, 3 international."""
    if origin.country != destination.country:
        return 3
    o, d = _normalise(origin.postal_code), _normalise(destination.postal_code)
    if o[:3] == d[:3]:
        return 0
    if o[:1] == d[:1]:
        return 1
    return 2


def check_serviceable(address: Address, which: str) -> None:
    if _normalise(address.postal_code).startswith(UNSERVICEABLE_PREFIX):
        raise Problem(
            422,
            "address_not_serviceable",
            "Address not serviceable",
            f"the carrier does not serve postal code {address.postal_code!r} ({address.country})",
            param=which,
        )


def quote(origin: Address, destination: Address, weight_grams: int, currency: str) -> list[dict[str, Any]]:
    z = zone(origin, destination)
    kg = math.ceil(weight_grams / 1000)
    rates = []
    for level, tariff in TARIFFS.items():
        days = tariff.days[z]
        if days is None:
            continue
        amount = (tariff.base + tariff.per_kg * kg) * ZONE_PERCENT[z] // 100
        rates.append({"service_level": level, "amount": amount, "currency": currency, "estimated_days": days})
    return rates


class CarrierState:
    def __init__(
        self,
        *,
        warehouse: Address,
        currency: str,
        emit: Emit,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.warehouse = warehouse
        self.currency = currency
        self.emit = emit
        self.clock = clock
        self.labels: dict[str, LabelRecord] = {}
        self.by_tracking: dict[str, str] = {}

    # -- persistence --------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {"labels": [label.model_dump(mode="json") for label in self.labels.values()]}

    def restore(self, data: dict[str, Any]) -> None:
        self.labels = {d["label_id"]: LabelRecord.model_validate(d) for d in data["labels"]}
        self.by_tracking = {label.tracking_number: label.label_id for label in self.labels.values()}

    # -- rates and labels ---------------------------------------------------------------------
    def rates(self, req: RatesRequest) -> list[dict[str, Any]]:
        check_serviceable(req.destination, "destination")
        check_serviceable(req.origin, "origin")
        rates = quote(req.origin, req.destination, req.weight_grams, self.currency)
        return [r for r in rates if req.service_level is None or r["service_level"] == req.service_level]

    def _tracking_number(self) -> str:
        while True:
            candidate = f"SB{secrets.randbelow(10**14):014d}"
            if candidate not in self.by_tracking:
                return candidate

    def create_label(self, req: LabelRequest, *, base_url: str) -> dict[str, Any]:
        origin = req.origin or self.warehouse
        check_serviceable(req.destination, "destination")
        check_serviceable(origin, "origin")
        offered = {
            r["service_level"]: r for r in quote(origin, req.destination, req.weight_grams, self.currency)
        }
        rate = offered.get(req.service_level)
        if rate is None:
            raise Problem(
                422,
                "service_level_unavailable",
                "Service level unavailable",
                f"{req.service_level} is not offered from {origin.country} to {req.destination.country}",
                param="service_level",
            )
        label_id = new_id("lbl")
        now = self.clock()
        label = LabelRecord(
            label_id=label_id,
            tracking_number=self._tracking_number(),
            label_url=f"{base_url.rstrip('/')}/v1/labels/{label_id}/document",
            reference=req.reference,
            direction=req.direction,
            service_level=req.service_level,
            amount=rate["amount"],
            currency=rate["currency"],
            status="label_created",
            origin=origin,
            destination=req.destination,
            weight_grams=req.weight_grams,
            estimated_days=rate["estimated_days"],
            webhook_url=str(req.webhook_url) if req.webhook_url else None,
            created_at=isoformat(now),
        )
        label.events.append(
            TrackingEvent(
                status="label_created",
                occurred_at=isoformat(now),
                location=self._place(origin),
                description="Shipping label created, parcel not yet handed over",
            )
        )
        self.labels[label_id] = label
        self.by_tracking[label.tracking_number] = label_id
        return label.public()

    def _label(self, label_id: str) -> LabelRecord:
        label = self.labels.get(label_id)
        if label is None:
            raise Problem(404, "not_found", "Not found", f"no label {label_id!r}", replayable=False)
        return label

    def _by_tracking(self, tracking_number: str) -> LabelRecord:
        label_id = self.by_tracking.get(tracking_number)
        if label_id is None:
            raise Problem(404, "not_found", "Not found", f"no shipment {tracking_number!r}", replayable=False)
        return self.labels[label_id]

    def get_label(self, label_id: str) -> dict[str, Any]:
        return self._label(label_id).public()

    def list_labels(self, reference: str | None) -> list[dict[str, Any]]:
        return [
            label.public()
            for label in self.labels.values()
            if reference is None or label.reference == reference
        ]

    def label_document(self, label_id: str) -> str:
        label = self._label(label_id)
        return (
            "SANDBOX SHIPPING LABEL - NOT FOR REAL USE\n"
            f"{label.service_level.upper()}  {label.tracking_number}\n"
            f"FROM {label.origin.postal_code} {label.origin.country}\n"
            f"TO   {label.destination.postal_code} {label.destination.country}\n"
            f"REF  {label.reference}\n"
        )

    def void_label(self, label_id: str) -> dict[str, Any]:
        """Void an unused label. Voiding a voided label is a no-op; a label in use cannot be voided."""
        label = self._label(label_id)
        if label.status == "voided":
            return label.public()
        if label.status != "label_created":
            raise Problem(
                409,
                "invalid_state",
                "Invalid state transition",
                f"label {label_id} is already in use ({label.status}); it cannot be voided",
                label_status=label.status,
            )
        label.status = "voided"
        return label.public()

    def tracking(self, tracking_number: str) -> dict[str, Any]:
        return self._by_tracking(tracking_number).tracking()

    # -- simulation ---------------------------------------------------------------------------
    @staticmethod
    def _place(address: Address) -> str:
        city = f"{address.city} " if address.city else ""
        return f"{city}{address.postal_code} {address.country}"

    def advance(self, tracking_number: str, req: AdvanceRequest) -> dict[str, Any]:
        """Move the shipment to its next event and tell the label's webhook_url about it."""
        label = self._by_tracking(tracking_number)
        if label.status in TERMINAL:
            raise Problem(
                409,
                "invalid_state",
                "Invalid state transition",
                f"shipment {tracking_number} is {label.status}; it has no next event",
                label_status=label.status,
                replayable=False,
            )
        status: TrackingStatus
        if req.event is not None:
            status = req.event
        else:
            last_normal = next(e.status for e in reversed(label.events) if e.status in PROGRESSION)
            status = PROGRESSION[PROGRESSION.index(last_normal) + 1]
        location, description = {
            "picked_up": (self._place(label.origin), "Picked up by the carrier (first scan)"),
            "in_transit": ("Sandbox sort center", "In transit"),
            "out_for_delivery": (self._place(label.destination), "Out for delivery"),
            "delivered": (self._place(label.destination), "Delivered"),
            "exception": ("Sandbox sort center", "Delivery exception: the parcel is delayed"),
            "returned_to_sender": (self._place(label.origin), "Returned to sender"),
        }[status]
        event = TrackingEvent(
            status=status, occurred_at=isoformat(self.clock()), location=location, description=description
        )
        label.events.append(event)
        label.status = status
        if label.webhook_url:
            self.emit(
                label.webhook_url,
                "tracking.updated",
                {
                    "tracking_number": label.tracking_number,
                    "label_id": label.label_id,
                    "reference": label.reference,
                    "direction": label.direction,
                    **event.model_dump(),
                },
            )
        return label.tracking()
