"""Refusals of the payment service (one class per refusal; the class name is the error type).

The provider's own refusals (``PaymentDeclined``, ``PaymentOperationRefused``, ``AuthorizationExpired``
...) live in ``services.payment.provider`` and are raised as they are.
"""

from __future__ import annotations

from core.errors import BusinessError, Conflict, NotFound


class PaymentNotFound(NotFound):
    """No payment with this id for this order (in our records)."""

    title = "Payment not found"


class PaymentMethodNotFound(NotFound):
    title = "Payment method not found"


class PaymentAlreadyExists(Conflict):
    """A payment with this id exists already (a second authorize under another idempotency key)."""

    title = "Payment already exists"


class InvalidPaymentState(BusinessError):
    """The payment's status does not allow the operation (capture of a voided payment ...)."""

    status = 409
    title = "Invalid payment state"


class CaptureExceedsAuthorized(BusinessError):
    status = 409
    title = "Capture exceeds the authorized amount"


class RefundExceedsCaptured(BusinessError):
    """A refund may never exceed what was captured minus what was refunded already."""

    status = 409
    title = "Refund exceeds the captured amount"
