"""Refusals of the discount service (one class per refusal; the class name is the error type)."""

from __future__ import annotations

from core.errors import BusinessError, Conflict, NotFound


class CouponNotFound(NotFound):
    """No such code, or the coupon was switched off."""

    title = "Coupon not found"


class CouponRefused(BusinessError):
    """A coupon that exists but cannot be used for this order now."""

    status = 422
    title = "Coupon cannot be used"


class CouponExpired(CouponRefused):
    title = "Coupon expired"


class CouponNotYetValid(CouponRefused):
    title = "Coupon not yet valid"


class CouponMinimumNotMet(CouponRefused):
    title = "Order subtotal below the coupon's minimum"


class CouponCurrencyMismatch(CouponRefused):
    title = "Coupon is for another currency"


class CouponExhausted(CouponRefused):
    """Every use the coupon allows is taken (reserved or committed)."""

    status = 409
    title = "Coupon exhausted"


class CouponPerCustomerLimitReached(CouponRefused):
    status = 409
    title = "Coupon already used by this customer"


class CouponUsageNotFound(NotFound):
    title = "No coupon reservation for this order"


class CouponReservationReleased(Conflict):
    """Commit of a reservation that was released already (compensated or expired)."""

    title = "Coupon reservation was released"


class CouponCodeTaken(Conflict):
    """A coupon with this code exists already (codes are unique, case-insensitive)."""

    title = "Coupon code taken"


class PromotionNotFound(NotFound):
    title = "Promotion not found"
