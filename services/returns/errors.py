"""Refusals of the return service: one class per refusal (the class name is the error ``type``)."""

from __future__ import annotations

from core.errors import BusinessError, Conflict, InvalidRequest, NotFound


class OrderNotDelivered(BusinessError):
    """Only a delivered order can be returned."""

    status = 409
    title = "Order not delivered"


class ReturnWindowClosed(BusinessError):
    """The return window (days from delivery) has passed."""

    status = 409
    title = "Return window closed"


class QuantityNotReturnable(BusinessError):
    """More units asked for than were bought minus those already returned or requested."""

    status = 409
    title = "Quantity not returnable"


class OrderItemNotInOrder(InvalidRequest):
    """A requested ``order_item_id`` is not a line of the order."""


class ReturnNotFound(NotFound):
    pass


class ReturnAlreadyExists(Conflict):
    """The return id is already used (by another request)."""


class InvalidReturnTransition(Conflict):
    """The return's status does not allow this step."""


class InvalidInspection(InvalidRequest):
    """The inspection result does not fit the return (unknown line, more accepted than sent)."""


class RefundExceedsApproved(Conflict):
    """The refunds of a return would exceed its computed refund amount."""


class RefundMismatch(Conflict):
    """A provider refund id already recorded for another return."""
