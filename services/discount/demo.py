"""Demo coupons for a fresh installation (``make demo`` and the like). Idempotent: existing codes are
left as they are."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.discount import service
from services.discount.models import CouponType
from services.discount.schemas import CouponIn

DEMO_CURRENCY = "USD"  # the carrier sandbox quotes in USD too

DEMO_COUPONS: tuple[CouponIn, ...] = (
    CouponIn(code="WELCOME10", description="10% off", type=CouponType.PERCENTAGE, value=10),
    CouponIn(
        code="SAVE5",
        description="5.00 off orders from 20.00",
        type=CouponType.FIXED_AMOUNT,
        value=500,
        currency=DEMO_CURRENCY,
        min_subtotal_amount=2000,
    ),
    CouponIn(code="FREESHIP", description="free shipping", type=CouponType.FREE_SHIPPING, value=0),
    CouponIn(
        code="LIMITED",
        description="15% off, first 20 orders",
        type=CouponType.PERCENTAGE,
        value=15,
        usage_limit_total=20,
    ),
    CouponIn(
        code="ONEPER",
        description="20% off, once per customer",
        type=CouponType.PERCENTAGE,
        value=20,
        usage_limit_per_customer=1,
    ),
)


async def load_demo_coupons(session: AsyncSession) -> list[str]:
    """Insert the demo coupons that do not exist yet; return the codes inserted. The caller commits."""
    inserted = []
    for coupon in DEMO_COUPONS:
        if await service.create_coupon(session, coupon, skip_existing=True):
            inserted.append(coupon.code)
    return inserted
