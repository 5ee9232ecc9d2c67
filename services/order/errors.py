"""Refusals of the order service (one class per refusal; the class name is the error type)."""

from __future__ import annotations

from core.errors import BusinessError, Conflict, InvalidRequest, NotFound


class OrderNotFound(NotFound):
    title = "Order not found"


class OrderItemNotFound(NotFound):
    title = "Order item not found"


class OrderAlreadyExists(Conflict):
    """An order with this id exists already (a second create with another idempotency key)."""

    title = "Order already exists"


class InvalidOrderTotals(InvalidRequest):
    """The amounts do not add up (lines, subtotal, discount, shipping, tax, total)."""

    title = "Order totals do not add up"


class InvalidOrderTransition(BusinessError):
    """The state machine does not allow this status change."""

    status = 409
    title = "Invalid order status transition"


class ReturnQuantityExceeded(BusinessError):
    """More units returned than were bought (minus those already returned)."""

    status = 409
    title = "Return quantity exceeds what is returnable"
