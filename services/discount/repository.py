"""All SQL of the discount service. Functions take the caller's session and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.discount.models import (
    Coupon,
    CouponUsage,
    Promotion,
    PromotionRule,
    PromotionUsage,
    UsageStatus,
)

HOLDING = (UsageStatus.RESERVED.value, UsageStatus.COMMITTED.value)


async def get_coupon_by_code(session: AsyncSession, code: str, *, for_update: bool = False) -> Coupon | None:
    """``code`` upper case (as stored). FOR UPDATE serializes every reservation of one coupon."""
    # uq_coupons_code
    stmt = select(Coupon).where(col(Coupon.code) == code).execution_options(populate_existing=True)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalars().first()


async def lock_coupon(session: AsyncSession, coupon_id: uuid.UUID) -> None:
    await session.execute(select(col(Coupon.id)).where(col(Coupon.id) == coupon_id).with_for_update())


async def add_times_used(session: AsyncSession, coupon_id: uuid.UUID, delta: int) -> None:
    await session.execute(
        update(Coupon)
        .where(col(Coupon.id) == coupon_id)
        .values(
            times_used=col(Coupon.times_used) + delta, version=col(Coupon.version) + 1, updated_at=func.now()
        )
    )


async def insert_coupon(
    session: AsyncSession, values: dict[str, Any], *, skip_existing: bool = False
) -> bool:
    """Insert a coupon; with ``skip_existing`` an existing code is left as it is. Returns whether inserted."""
    stmt = pg_insert(Coupon).values(**values)
    if skip_existing:
        stmt = stmt.on_conflict_do_nothing(constraint="uq_coupons_code")
    return (await session.execute(stmt.returning(col(Coupon.id)))).first() is not None


async def count_holding(session: AsyncSession, coupon_id: uuid.UUID, user_id: uuid.UUID) -> int:
    """A user's usages of a coupon that hold a slot (reserved or committed)."""
    # idx_coupon_usage_coupon_user (partial: status IN reserved, committed)
    stmt = select(func.count()).where(
        col(CouponUsage.coupon_id) == coupon_id,
        col(CouponUsage.user_id) == user_id,
        col(CouponUsage.status).in_(HOLDING),
    )
    return int((await session.execute(stmt)).scalar_one())


async def get_usage(session: AsyncSession, coupon_id: uuid.UUID, order_id: uuid.UUID) -> CouponUsage | None:
    # uq_coupon_usage_coupon_order
    stmt = (
        select(CouponUsage)
        .where(col(CouponUsage.coupon_id) == coupon_id, col(CouponUsage.order_id) == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalars().first()


async def usages_for_order(
    session: AsyncSession, order_id: uuid.UUID, *, for_update: bool = False
) -> Sequence[CouponUsage]:
    # idx_coupon_usage_order
    stmt = (
        select(CouponUsage)
        .where(col(CouponUsage.order_id) == order_id)
        .order_by(col(CouponUsage.coupon_id))
        .execution_options(populate_existing=True)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalars().all()


async def insert_usage(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(CouponUsage).values(**values))


async def update_usage(session: AsyncSession, usage_id: uuid.UUID, values: dict[str, Any]) -> None:
    await session.execute(update(CouponUsage).where(col(CouponUsage.id) == usage_id).values(**values))


async def release_reserved(
    session: AsyncSession, coupon_id: uuid.UUID, order_id: uuid.UUID, now: datetime
) -> int:
    """Release the order's reservation of a coupon (the caller holds the coupon's lock); the count."""
    stmt = (
        update(CouponUsage)
        .where(
            col(CouponUsage.coupon_id) == coupon_id,
            col(CouponUsage.order_id) == order_id,
            col(CouponUsage.status) == UsageStatus.RESERVED.value,
        )
        .values(status=UsageStatus.RELEASED.value, released_at=now)
        .returning(col(CouponUsage.id))
    )
    return len((await session.execute(stmt)).all())


async def expired_reservations(
    session: AsyncSession, now: datetime, limit: int
) -> Sequence[tuple[uuid.UUID, uuid.UUID]]:
    """(coupon_id, order_id) of reservations past their expiry."""
    # idx_coupon_usage_expiry (partial: status = reserved)
    stmt = (
        select(col(CouponUsage.coupon_id), col(CouponUsage.order_id))
        .where(col(CouponUsage.status) == UsageStatus.RESERVED.value, col(CouponUsage.expires_at) <= now)
        .order_by(col(CouponUsage.expires_at))
        .limit(limit)
    )
    return [(r[0], r[1]) for r in (await session.execute(stmt)).all()]


# -- promotions --------------------------------------------------------------------------------------


async def insert_promotion(
    session: AsyncSession, values: dict[str, Any], rules: list[dict[str, Any]]
) -> None:
    await session.execute(insert(Promotion).values(**values))
    if rules:
        await session.execute(insert(PromotionRule), rules)


async def active_promotions(session: AsyncSession, now: datetime) -> Sequence[Promotion]:
    """Active promotions in their window, highest priority first."""
    # idx_promotions_active_priority (partial: is_active)
    stmt = (
        select(Promotion)
        .where(
            col(Promotion.is_active),
            or_(col(Promotion.starts_at).is_(None), col(Promotion.starts_at) <= now),
            or_(col(Promotion.ends_at).is_(None), col(Promotion.ends_at) > now),
        )
        .order_by(col(Promotion.priority).desc(), col(Promotion.id))
    )
    return (await session.execute(stmt)).scalars().all()


async def rules_of(session: AsyncSession, promotion_ids: Sequence[uuid.UUID]) -> Sequence[PromotionRule]:
    # idx_promotion_rules_promotion
    if not promotion_ids:
        return []
    stmt = select(PromotionRule).where(col(PromotionRule.promotion_id).in_(promotion_ids))
    return (await session.execute(stmt)).scalars().all()


async def insert_promotion_usage(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    stmt = (
        pg_insert(PromotionUsage)
        .values(rows)
        .on_conflict_do_nothing(constraint="uq_promotion_usage_promotion_order")
        .returning(col(PromotionUsage.id))
    )
    return len((await session.execute(stmt)).all())


# -- administration ----------------------------------------------------------------------------------------


async def list_coupons(
    session: AsyncSession, *, active: bool | None, after_code: str | None, limit: int
) -> Sequence[Coupon]:
    """Coupons by code (keyset after ``after_code``)."""
    # uq_coupons_code serves the ordering and the keyset
    stmt = select(Coupon).order_by(col(Coupon.code)).limit(limit)
    if active is not None:
        stmt = stmt.where(col(Coupon.is_active).is_(active))
    if after_code is not None:
        stmt = stmt.where(col(Coupon.code) > after_code)
    return (await session.execute(stmt)).scalars().all()


async def set_coupon_active(session: AsyncSession, code: str, active: bool) -> bool:
    stmt = (
        update(Coupon)
        .where(col(Coupon.code) == code)
        .values(is_active=active, version=col(Coupon.version) + 1, updated_at=func.now())
        .returning(col(Coupon.id))
    )
    return (await session.execute(stmt)).first() is not None


async def list_promotions(session: AsyncSession, *, active: bool | None, limit: int) -> Sequence[Promotion]:
    """Promotions in evaluation order (priority, then id); an admin list, not a hot path."""
    stmt = select(Promotion).order_by(col(Promotion.priority).desc(), col(Promotion.id)).limit(limit)
    if active is not None:
        stmt = stmt.where(col(Promotion.is_active).is_(active))
    return (await session.execute(stmt)).scalars().all()


async def get_promotion(session: AsyncSession, promotion_id: uuid.UUID) -> Promotion | None:
    stmt = (
        select(Promotion).where(col(Promotion.id) == promotion_id).execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalars().first()


async def set_promotion_active(session: AsyncSession, promotion_id: uuid.UUID, active: bool) -> bool:
    stmt = (
        update(Promotion)
        .where(col(Promotion.id) == promotion_id)
        .values(is_active=active, updated_at=func.now())
        .returning(col(Promotion.id))
    )
    return (await session.execute(stmt)).first() is not None
