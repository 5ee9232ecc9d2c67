"""Refusals of the user service (the class name is the stable error ``type``).

Another user's address or payment method is refused exactly like a missing one: the error never
tells whether the id exists."""

from __future__ import annotations

from core.errors import Conflict, InvalidRequest, NotFound


class ProfileNotFound(NotFound):
    title = "Profile not found"


class ProfileAlreadyExists(Conflict):
    title = "Profile already exists"


class AddressNotFound(NotFound):
    title = "Address not found"


class PaymentMethodNotFound(NotFound):
    title = "Payment method not found"


class PaymentMethodExpired(InvalidRequest):
    title = "Payment method expired"


class InvalidCursor(InvalidRequest):
    title = "Invalid pagination cursor"
