"""Refusals of the product service (catalog, inventory, reviews). The class name is the error type."""

from __future__ import annotations

from typing import ClassVar

from core.errors import BusinessError, Conflict, InvalidRequest, NotFound


class ProductNotFound(NotFound):
    """No such product (or not visible to shoppers: only ``active`` products are)."""


class CategoryNotFound(NotFound):
    """No category with that slug or id."""


class VariantNotFound(NotFound):
    """No such variant."""


class ReviewNotFound(NotFound):
    """No such review."""


class InvalidCursor(InvalidRequest):
    """A pagination cursor that was not issued by us for this very query (tampered, truncated, other query)."""

    title = "Invalid pagination cursor"


class SkuTaken(Conflict):
    """A product or variant SKU that is already in use."""


class SlugTaken(Conflict):
    """A product or category slug that is already in use."""


class OutOfStock(Conflict):
    """Not enough available stock (on_hand - reserved) for one or more variants; context ``variants``."""

    title = "Out of stock"


class VariantUnavailable(Conflict):
    """Unknown or inactive variant, or its product is not active; context ``variant_ids``."""

    title = "Variant unavailable"


class MixedCurrencies(InvalidRequest):
    """The lines of one cart are priced in more than one currency."""


class StockBelowReserved(Conflict):
    """``on_hand`` may not be set below what is currently reserved."""


class ConcurrentUpdate(Conflict):
    """The row changed since it was read (stale ``version``)."""


class ReservationExists(Conflict):
    """The order already has a different (or no longer active) reservation."""


class ReservationNotFound(NotFound):
    """The order has no reservation to commit."""


class ReservationReleased(Conflict):
    """A reservation that was released (compensated) cannot be committed."""


class ReviewNotAllowed(BusinessError):
    """Only a shopper who bought the product may review it."""

    status: ClassVar[int] = 403
    title: ClassVar[str] = "Review not allowed"


class DuplicateReview(Conflict):
    """One review per product per user."""
