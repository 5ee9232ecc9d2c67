"""Refusals of the shipping service: one class per refusal (the class name is the error ``type``)."""

from __future__ import annotations

from core.errors import BusinessError, Conflict, InvalidRequest, NotFound


class AddressNotServed(BusinessError):
    """No active zone covers the address, or the chosen method does not serve the address's zone."""

    status = 422
    title = "Address not served"


class NoRateAvailable(BusinessError):
    """The method has no rate for this weight / currency / subtotal (e.g. the parcel is too heavy)."""

    status = 422
    title = "No shipping rate available"


class ShippingMethodUnavailable(BusinessError):
    """The method (or its carrier) does not exist or is not active."""

    status = 422
    title = "Shipping method unavailable"


class ShipmentNotFound(NotFound):
    pass


class ShipmentAlreadyExists(Conflict):
    """The order already has a shipment in this direction (under another shipment id)."""


class InvalidShipmentState(Conflict):
    """The shipment's status does not allow the operation (e.g. cancelling a parcel already picked up)."""


class CarrierNotFound(NotFound):
    pass


class ZoneNotFound(NotFound):
    pass


class MethodNotFound(NotFound):
    pass


class RateNotFound(NotFound):
    pass


class DuplicateShippingConfig(Conflict):
    """A carrier code, zone name or (zone, method code) that already exists."""


class InvalidShippingConfig(InvalidRequest):
    """Admin input that the rules refuse (bad postal-code regex, overlapping weight bands ...)."""
