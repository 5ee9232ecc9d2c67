"""The shipping carrier port (:class:`CarrierClient`) and its adapter for the carrier sandbox.

Same error style as ``services.payment.provider``:

* business refusals (:class:`core.errors.BusinessError`): :class:`AddressNotServiceable`,
  :class:`ServiceLevelUnavailable`, :class:`CarrierOperationRefused` (e.g. voiding a label already
  picked up), :class:`LabelNotFound`, ``IdempotencyKeyReused`` - retrying cannot succeed;
* :class:`CarrierUnavailable`: transport error, timeout, 5xx or 429 - retry with the same
  idempotency key;
* :class:`CarrierRequestError`: the carrier rejected the request's shape (a bug here).

Buying a label takes an idempotency key (``Idempotency-Key`` header): a retried purchase returns
the first label instead of buying a second one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NoReturn, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import BusinessError, IdempotencyKeyReused, NotFound
from core.http_adapter import JsonHttpAdapter, ProviderError

_M = TypeVar("_M", bound=BaseModel)

ServiceLevel = Literal["standard", "express", "overnight"]
Direction = Literal["outbound", "return"]
ShipmentStatus = Literal[
    "label_created",
    "picked_up",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "exception",
    "returned_to_sender",
    "voided",
]
FaultOperation = Literal["rates", "create_label", "void_label", "get_label", "list_labels", "tracking", "any"]
FaultMode = Literal["error", "delay", "accept_then_error"]


# --------------------------------------------------------------------------------------------
# Values and results


class _Result(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Address(_Result):
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    postal_code: str
    city: str | None = None
    line1: str | None = None
    line2: str | None = None
    name: str | None = None


class Rate(_Result):
    service_level: ServiceLevel
    amount: int
    currency: str
    estimated_days: int


class Label(_Result):
    label_id: str
    tracking_number: str
    label_url: str
    amount: int
    currency: str
    status: ShipmentStatus
    service_level: ServiceLevel
    reference: str
    direction: Direction = "outbound"
    estimated_days: int | None = None
    created_at: datetime | None = None


class TrackingEvent(_Result):
    status: ShipmentStatus
    occurred_at: datetime
    location: str
    description: str


class Tracking(_Result):
    tracking_number: str
    status: ShipmentStatus
    reference: str | None = None
    label_id: str | None = None
    direction: Direction = "outbound"
    events: tuple[TrackingEvent, ...] = ()


# --------------------------------------------------------------------------------------------
# Errors


class CarrierError(ProviderError):
    """A failure that is not a business refusal. ``retryable`` tells whether to try again."""


class CarrierUnavailable(CarrierError):
    """Transport error, timeout, 5xx or 429: the call may or may not have happened. Retry, same key."""

    retryable = True


class CarrierRequestError(CarrierError):
    """The carrier rejected the request itself: a bug, not retryable."""


class AddressNotServiceable(BusinessError):
    """The carrier does not deliver to (or collect from) this address."""

    status = 422
    title = "Address not serviceable"

    def __init__(self, detail: str, *, which: str | None = None) -> None:
        super().__init__(detail, which=which)
        self.which = which


class ServiceLevelUnavailable(BusinessError):
    status = 422
    title = "Service level unavailable"


class CarrierOperationRefused(BusinessError):
    """The label's state does not allow the operation (``code``: ``invalid_state`` ...)."""

    status = 409
    title = "Carrier operation refused"

    def __init__(self, detail: str, *, code: str, label_status: str | None = None) -> None:
        super().__init__(detail, code=code, label_status=label_status)
        self.code = code
        self.label_status = label_status


class LabelNotFound(NotFound):
    """The carrier does not know this label or tracking number."""


# --------------------------------------------------------------------------------------------
# The port


@runtime_checkable
class CarrierClient(Protocol):
    async def get_rates(
        self,
        *,
        origin: Address,
        destination: Address,
        weight_grams: int,
        service_level: ServiceLevel | None = None,
    ) -> list[Rate]: ...

    async def buy_label(
        self,
        *,
        reference: str,
        service_level: ServiceLevel,
        destination: Address,
        weight_grams: int,
        idempotency_key: str,
        origin: Address | None = None,
        webhook_url: str | None = None,
        direction: Direction = "outbound",
    ) -> Label: ...

    async def void_label(self, label_id: str, *, idempotency_key: str | None = None) -> Label: ...

    async def get_tracking(self, tracking_number: str) -> Tracking: ...


# --------------------------------------------------------------------------------------------
# Carrier sandbox adapter


class CarrierSandboxClient(JsonHttpAdapter):
    """:class:`CarrierClient` for ``sandboxes.carrier`` over HTTP (one pooled ``httpx.AsyncClient``)."""

    provider_name = "carrier"
    unavailable = CarrierUnavailable

    @staticmethod
    def _raise_refusal(status: int, problem: dict[str, Any], method: str, path: str) -> NoReturn:
        code = str(problem.get("type", ""))
        detail = str(problem.get("detail") or f"carrier answered {status} to {method} {path}")
        if status == 404:
            raise LabelNotFound(detail)
        if code == "idempotency_key_reused":
            raise IdempotencyKeyReused(detail, provider="carrier")
        if code == "address_not_serviceable":
            raise AddressNotServiceable(detail, which=problem.get("param"))
        if code == "service_level_unavailable":
            raise ServiceLevelUnavailable(detail)
        if status == 409:
            raise CarrierOperationRefused(
                detail, code=code or "conflict", label_status=problem.get("label_status")
            )
        raise CarrierRequestError(
            f"carrier refused {method} {path} ({status}): {detail}", status_code=status, problem=problem
        )

    @staticmethod
    def _parse(model: type[_M], body: Any) -> _M:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise CarrierUnavailable(f"carrier answer does not match {model.__name__}: {exc}") from exc

    # -- the port ---------------------------------------------------------------------------------
    async def get_rates(
        self,
        *,
        origin: Address,
        destination: Address,
        weight_grams: int,
        service_level: ServiceLevel | None = None,
    ) -> list[Rate]:
        payload: dict[str, Any] = {
            "origin": origin.model_dump(exclude_none=True),
            "destination": destination.model_dump(exclude_none=True),
            "weight_grams": weight_grams,
        }
        if service_level is not None:
            payload["service_level"] = service_level
        body = await self._call("POST", "/v1/rates", json=payload)
        return [self._parse(Rate, item) for item in body]

    async def buy_label(
        self,
        *,
        reference: str,
        service_level: ServiceLevel,
        destination: Address,
        weight_grams: int,
        idempotency_key: str,
        origin: Address | None = None,
        webhook_url: str | None = None,
        direction: Direction = "outbound",
    ) -> Label:
        payload: dict[str, Any] = {
            "reference": reference,
            "service_level": service_level,
            "destination": destination.model_dump(exclude_none=True),
            "weight_grams": weight_grams,
            "direction": direction,
        }
        if origin is not None:
            payload["origin"] = origin.model_dump(exclude_none=True)
        if webhook_url is not None:
            payload["webhook_url"] = webhook_url
        body = await self._call("POST", "/v1/labels", json=payload, idempotency_key=idempotency_key)
        return self._parse(Label, body)

    async def void_label(self, label_id: str, *, idempotency_key: str | None = None) -> Label:
        """Void an unused label (voiding it again is harmless); ``CarrierOperationRefused`` once in use."""
        body = await self._call("POST", f"/v1/labels/{label_id}/void", idempotency_key=idempotency_key)
        return self._parse(Label, body)

    async def get_tracking(self, tracking_number: str) -> Tracking:
        return self._parse(Tracking, await self._call("GET", f"/v1/tracking/{tracking_number}"))

    # -- sandbox only -----------------------------------------------------------------------------
    async def list_labels(self, reference: str | None = None) -> list[Label]:
        params = {"reference": reference} if reference is not None else None
        body = await self._call("GET", "/v1/labels", params=params)
        return [self._parse(Label, item) for item in body]

    async def advance_shipment(
        self, tracking_number: str, *, event: Literal["exception", "returned_to_sender"] | None = None
    ) -> Tracking:
        """Move the parcel to its next event; the carrier sends ``tracking.updated`` to the webhook_url."""
        payload = {"event": event} if event is not None else {}
        body = await self._call("POST", f"/_control/shipments/{tracking_number}/advance", json=payload)
        return self._parse(Tracking, body)

    async def inject_fault(
        self, operation: FaultOperation, mode: FaultMode, *, count: int = 1, delay_ms: int = 0
    ) -> None:
        await self._call(
            "POST",
            "/_control/faults",
            json={"operation": operation, "mode": mode, "count": count, "delay_ms": delay_ms},
        )

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/_control/faults")
