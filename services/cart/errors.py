"""Refusals of the cart service. The class name is the error type."""

from __future__ import annotations

from core.errors import Conflict, InvalidRequest, NotFound


class CartNotFound(NotFound):
    """No such cart."""


class CartItemNotFound(NotFound):
    """No such item in this cart."""


class CartLocked(Conflict):
    """A checkout holds the cart (semantic lock): it cannot be edited or locked by another checkout."""

    title = "Cart locked by a checkout"


class CartNotActive(Conflict):
    """The cart was converted, merged or abandoned; a fresh one is created on the next get."""


class CartNotLocked(Conflict):
    """Converting needs the cart to be locked by the converting checkout."""


class CartEmpty(Conflict):
    """Nothing to check out."""


class ConcurrentUpdate(Conflict):
    """The cart changed since the client read it (stale ``expected_version``)."""


class CurrencyMismatch(InvalidRequest):
    """An item priced in another currency than the cart's."""


class QuantityLimitExceeded(InvalidRequest):
    """A cart line may hold at most 99 units."""
