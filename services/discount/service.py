"""Rules of the discount service: coupon validation and reservation under concurrency, and a small
engine for automatic promotions. Never commits: the caller owns the transaction.

Limits: ``reserve`` locks the coupon row (SELECT ... FOR UPDATE), so every reservation of one coupon
runs one after the other; inside that lock it counts the slots held (``times_used``: reserved +
committed) against ``usage_limit_total`` and the user's held usages against
``usage_limit_per_customer``, then takes a slot. ``release`` gives the slot back under the same lock.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidRequest
from services.discount import repository as repo
from services.discount.errors import (
    CouponCodeTaken,
    CouponCurrencyMismatch,
    CouponExhausted,
    CouponExpired,
    CouponMinimumNotMet,
    CouponNotFound,
    CouponNotYetValid,
    CouponPerCustomerLimitReached,
    CouponReservationReleased,
    CouponUsageNotFound,
    PromotionNotFound,
)
from services.discount.models import (
    Coupon,
    CouponType,
    CouponUsage,
    Promotion,
    PromotionRule,
    PromotionType,
    RuleType,
    UsageStatus,
)
from services.discount.schemas import (
    AppliedPromotion,
    CartLineIn,
    Committed,
    CouponIn,
    CouponPage,
    CouponQuote,
    CouponView,
    PromotionEvaluation,
    PromotionIn,
    PromotionView,
    Released,
    Reservation,
    RuleView,
)

# How long a reservation holds its slot before the expiry sweep may free it. Generous: a checkout
# may wait days for an asynchronous payment outcome, and a released slot cannot be committed.
RESERVATION_TTL: Final = timedelta(days=8)


def normalize_code(code: str) -> str:
    return code.strip().upper()


# -- coupons -------------------------------------------------------------------------------------------


def coupon_discount(coupon: Coupon, subtotal: int) -> int:
    """Integer minor units, never above the subtotal nor the coupon's cap."""
    if coupon.type == CouponType.PERCENTAGE:
        amount = subtotal * coupon.value // 100
    elif coupon.type == CouponType.FIXED_AMOUNT:
        amount = coupon.value
    else:  # free shipping: the shipping quote is waived, the subtotal is not reduced
        amount = 0
    if coupon.max_discount_amount is not None:
        amount = min(amount, coupon.max_discount_amount)
    return max(0, min(amount, subtotal))


def check_applicable(
    coupon: Coupon | None, code: str, *, subtotal: int, currency: str, now: datetime
) -> Coupon:
    """Refuse a coupon that cannot apply to this order at ``now`` (limits aside)."""
    if coupon is None or not coupon.is_active:
        raise CouponNotFound(f"no coupon {code!r}", code=code)
    if coupon.starts_at is not None and now < coupon.starts_at:
        raise CouponNotYetValid(
            f"coupon {coupon.code} is valid from {coupon.starts_at.isoformat()}",
            code=coupon.code,
            starts_at=coupon.starts_at.isoformat(),
        )
    if coupon.ends_at is not None and now >= coupon.ends_at:
        raise CouponExpired(
            f"coupon {coupon.code} expired at {coupon.ends_at.isoformat()}",
            code=coupon.code,
            ends_at=coupon.ends_at.isoformat(),
        )
    if coupon.currency is not None and coupon.currency != currency:
        raise CouponCurrencyMismatch(
            f"coupon {coupon.code} is for {coupon.currency} orders",
            code=coupon.code,
            currency=coupon.currency,
        )
    if subtotal < coupon.min_subtotal_amount:
        raise CouponMinimumNotMet(
            f"coupon {coupon.code} needs a subtotal of at least {coupon.min_subtotal_amount}",
            code=coupon.code,
            min_subtotal_amount=coupon.min_subtotal_amount,
        )
    return coupon


async def check_limits(session: AsyncSession, coupon: Coupon, user_id: uuid.UUID) -> None:
    """Refuse when no slot is left (in total, or for this user). Atomic only under the coupon's lock."""
    if coupon.usage_limit_total is not None and coupon.times_used >= coupon.usage_limit_total:
        raise CouponExhausted(
            f"coupon {coupon.code} has no uses left",
            code=coupon.code,
            usage_limit_total=coupon.usage_limit_total,
        )
    if coupon.usage_limit_per_customer is not None:
        held = await repo.count_holding(session, coupon.id, user_id)
        if held >= coupon.usage_limit_per_customer:
            raise CouponPerCustomerLimitReached(
                f"coupon {coupon.code} can be used {coupon.usage_limit_per_customer} time(s) per customer",
                code=coupon.code,
                usage_limit_per_customer=coupon.usage_limit_per_customer,
            )


def _quote(coupon: Coupon, subtotal: int) -> CouponQuote:
    return CouponQuote(
        coupon_id=coupon.id,
        code=coupon.code,
        type=CouponType(coupon.type),
        discount_amount=coupon_discount(coupon, subtotal),
        free_shipping=coupon.type == CouponType.FREE_SHIPPING,
    )


async def validate(
    session: AsyncSession, code: str, user_id: uuid.UUID, subtotal: int, currency: str, now: datetime
) -> CouponQuote:
    """What the coupon would give this user's order now, or the refusal (a preview: takes no slot)."""
    code = normalize_code(code)
    coupon = check_applicable(
        await repo.get_coupon_by_code(session, code), code, subtotal=subtotal, currency=currency, now=now
    )
    await check_limits(session, coupon, user_id)
    return _quote(coupon, subtotal)


def _reservation(
    coupon: Coupon, usage_id: uuid.UUID, amount: int, status: UsageStatus, expires: datetime
) -> Reservation:
    return Reservation(
        coupon_id=coupon.id,
        code=coupon.code,
        usage_id=usage_id,
        discount_amount=amount,
        free_shipping=coupon.type == CouponType.FREE_SHIPPING,
        status=status,
        expires_at=expires,
    )


async def reserve(
    session: AsyncSession,
    code: str,
    user_id: uuid.UUID,
    order_id: uuid.UUID,
    subtotal: int,
    currency: str,
    now: datetime,
) -> Reservation:
    """Take one slot of the coupon for this order. The order's existing reservation is returned as
    it is; a released one is taken again if a slot is free."""
    code = normalize_code(code)
    coupon = check_applicable(
        await repo.get_coupon_by_code(session, code, for_update=True),
        code,
        subtotal=subtotal,
        currency=currency,
        now=now,
    )
    usage = await repo.get_usage(session, coupon.id, order_id)
    if usage is not None and usage.status != UsageStatus.RELEASED:
        return _reservation(
            coupon, usage.id, usage.discount_amount, UsageStatus(usage.status), usage.expires_at
        )
    await check_limits(session, coupon, user_id)
    quote = _quote(coupon, subtotal)
    expires = now + RESERVATION_TTL
    values: dict[str, Any] = {
        "user_id": user_id,
        "status": UsageStatus.RESERVED.value,
        "discount_amount": quote.discount_amount,
        "reserved_at": now,
        "expires_at": expires,
        "released_at": None,
    }
    if usage is None:
        usage_id = uuid.uuid4()
        await repo.insert_usage(
            session, {"id": usage_id, "coupon_id": coupon.id, "order_id": order_id, **values}
        )
    else:
        usage_id = usage.id
        await repo.update_usage(session, usage_id, values)
    await repo.add_times_used(session, coupon.id, +1)
    return _reservation(coupon, usage_id, quote.discount_amount, UsageStatus.RESERVED, expires)


async def release(session: AsyncSession, order_id: uuid.UUID, now: datetime) -> Released:
    """Compensation: free the order's reserved slot(s). Committed usages stay (the order was placed).
    No usage at all is nothing to undo (the reserve step may never have happened)."""
    usages = await repo.usages_for_order(session, order_id)
    released = 0
    for coupon_id in sorted({u.coupon_id for u in usages if u.status == UsageStatus.RESERVED}):
        await repo.lock_coupon(session, coupon_id)  # same lock order as reserve: coupon, then usage
        count = await repo.release_reserved(session, coupon_id, order_id, now)
        if count:
            await repo.add_times_used(session, coupon_id, -count)
        released += count
    return Released(order_id=order_id, found=bool(usages), released=released)


async def release_expired(session: AsyncSession, now: datetime, limit: int = 500) -> int:
    """Maintenance: free reservations past their expiry (a checkout that never finished)."""
    total = 0
    for _, order_id in await repo.expired_reservations(session, now, limit):
        total += (await release(session, order_id, now)).released
    return total


async def commit(session: AsyncSession, order_id: uuid.UUID, now: datetime) -> Committed:
    """The order was placed: its reservation becomes a committed use (it keeps its slot)."""
    usages: Sequence[CouponUsage] = await repo.usages_for_order(session, order_id, for_update=True)
    if not usages:
        raise CouponUsageNotFound(f"order {order_id} reserved no coupon", order_id=str(order_id))
    live = [u for u in usages if u.status != UsageStatus.RELEASED]
    if not live:
        raise CouponReservationReleased(
            f"the coupon reservation of order {order_id} was released", order_id=str(order_id)
        )
    usage = live[0]
    if usage.status == UsageStatus.COMMITTED:
        return Committed(order_id=order_id, coupon_id=usage.coupon_id, committed=False)
    await repo.update_usage(session, usage.id, {"status": UsageStatus.COMMITTED.value, "committed_at": now})
    return Committed(order_id=order_id, coupon_id=usage.coupon_id, committed=True)


async def create_coupon(session: AsyncSession, new: CouponIn, *, skip_existing: bool = False) -> bool:
    """Admin: a new coupon (code stored upper case). Returns whether it was inserted; an existing
    code is ``CouponCodeTaken`` (with ``skip_existing``: left as it is, False)."""
    values = new.model_dump()
    values.update(id=uuid.uuid4(), code=normalize_code(new.code), type=new.type.value)
    inserted = await repo.insert_coupon(session, values, skip_existing=True)
    if not inserted and not skip_existing:
        raise CouponCodeTaken(f"coupon {values['code']} exists already", code=values["code"])
    return inserted


async def get_coupon(session: AsyncSession, code: str) -> CouponView:
    """Admin view of one coupon, active or not."""
    coupon = await repo.get_coupon_by_code(session, normalize_code(code))
    if coupon is None:
        raise CouponNotFound(f"no coupon {code}", code=code)
    return CouponView.model_validate(coupon)


async def list_coupons(
    session: AsyncSession, *, active: bool | None = None, cursor: str | None = None, limit: int = 50
) -> CouponPage:
    """Coupons by code, ``limit`` per page; ``next_cursor`` (the last code) fetches the next page."""
    if not 1 <= limit <= 200:
        raise InvalidRequest("limit must be 1..200", limit=limit)
    rows = await repo.list_coupons(
        session, active=active, after_code=normalize_code(cursor) if cursor else None, limit=limit + 1
    )
    items = [CouponView.model_validate(c) for c in rows[:limit]]
    return CouponPage(items=items, next_cursor=items[-1].code if len(rows) > limit and items else None)


async def set_coupon_active(session: AsyncSession, code: str, active: bool) -> CouponView:
    """Switch a coupon on or off (off: validation answers CouponNotFound; held usages stay valid)."""
    if not await repo.set_coupon_active(session, normalize_code(code), active):
        raise CouponNotFound(f"no coupon {code}", code=code)
    return await get_coupon(session, code)


# -- promotions ----------------------------------------------------------------------------------------


async def create_promotion(session: AsyncSession, new: PromotionIn) -> uuid.UUID:
    promotion_id = uuid.uuid4()
    values = new.model_dump(exclude={"rules"}) | {"id": promotion_id, "type": new.type.value}
    rules = [
        {"id": uuid.uuid4(), "promotion_id": promotion_id, "rule_type": r.rule_type.value, "params": r.params}
        for r in new.rules
    ]
    await repo.insert_promotion(session, values, rules)
    return promotion_id


async def get_promotion(session: AsyncSession, promotion_id: uuid.UUID) -> PromotionView:
    promotion = await repo.get_promotion(session, promotion_id)
    if promotion is None:
        raise PromotionNotFound(f"no promotion {promotion_id}", promotion_id=str(promotion_id))
    return _promotion_view(promotion, await repo.rules_of(session, [promotion.id]))


async def list_promotions(
    session: AsyncSession, *, active: bool | None = None, limit: int = 100
) -> list[PromotionView]:
    """Promotions in evaluation order (highest priority first), with their rules."""
    if not 1 <= limit <= 500:
        raise InvalidRequest("limit must be 1..500", limit=limit)
    promotions = await repo.list_promotions(session, active=active, limit=limit)
    rules: dict[uuid.UUID, list[PromotionRule]] = defaultdict(list)
    for rule in await repo.rules_of(session, [p.id for p in promotions]):
        rules[rule.promotion_id].append(rule)
    return [_promotion_view(p, rules[p.id]) for p in promotions]


async def set_promotion_active(session: AsyncSession, promotion_id: uuid.UUID, active: bool) -> PromotionView:
    if not await repo.set_promotion_active(session, promotion_id, active):
        raise PromotionNotFound(f"no promotion {promotion_id}", promotion_id=str(promotion_id))
    return await get_promotion(session, promotion_id)


def _promotion_view(promotion: Promotion, rules: Sequence[PromotionRule]) -> PromotionView:
    return PromotionView(
        id=promotion.id,
        name=promotion.name,
        description=promotion.description,
        type=PromotionType(promotion.type),
        value=promotion.value,
        currency=promotion.currency,
        max_discount_amount=promotion.max_discount_amount,
        priority=promotion.priority,
        stackable=promotion.stackable,
        starts_at=promotion.starts_at,
        ends_at=promotion.ends_at,
        is_active=promotion.is_active,
        rules=[
            RuleView.model_validate(r) for r in sorted(rules, key=lambda r: (r.rule_type, str(r.id)))
        ],  # all must hold: order is not meaningful
        created_at=promotion.created_at,
        updated_at=promotion.updated_at,
    )


def _ids(params: dict[str, Any], name: str) -> set[str]:
    return {str(v) for v in params.get(name, [])}


def promotion_discount(
    promotion: Promotion, rules: Sequence[PromotionRule], lines: Sequence[CartLineIn]
) -> int:
    """What one promotion gives these lines (0: it does not apply). All rules must hold.

    ``category`` / ``product`` rules narrow the lines the discount applies to; ``min_subtotal``
    looks at the whole cart; with ``buy_x_get_y`` the discount applies to the cheapest free units
    (for every ``buy + get`` units, ``get`` are discounted: value 100 makes them free)."""
    subtotal = sum(line.unit_price_amount * line.quantity for line in lines)
    eligible = list(lines)
    free_units: tuple[int, int] | None = None
    for rule in rules:
        params = rule.params or {}
        if rule.rule_type == RuleType.MIN_SUBTOTAL and subtotal < int(params.get("amount", 0)):
            return 0
        if rule.rule_type == RuleType.CATEGORY:
            wanted = _ids(params, "category_ids")
            eligible = [li for li in eligible if wanted & {str(c) for c in li.category_ids}]
        if rule.rule_type == RuleType.PRODUCT:
            wanted = _ids(params, "product_ids")
            eligible = [li for li in eligible if str(li.product_id) in wanted]
        if rule.rule_type == RuleType.BUY_X_GET_Y:
            free_units = (int(params.get("buy", 0)), int(params.get("get", 0)))
    if not eligible:
        return 0
    if free_units is not None:
        buy, get = free_units
        if buy < 1 or get < 1:
            return 0
        units = sorted(li.unit_price_amount for li in eligible for _ in range(li.quantity))
        count = len(units) // (buy + get) * get
        base = sum(units[:count])
    else:
        base = sum(li.unit_price_amount * li.quantity for li in eligible)
    if promotion.type == PromotionType.PERCENTAGE:
        amount = base * promotion.value // 100
    else:
        amount = promotion.value
    if promotion.max_discount_amount is not None:
        amount = min(amount, promotion.max_discount_amount)
    return max(0, min(amount, base))


async def evaluate_promotions(
    session: AsyncSession, lines: Sequence[CartLineIn], currency: str, now: datetime
) -> PromotionEvaluation:
    """The automatic promotions for a cart, highest priority first. A non-stackable promotion applies
    alone (the first that applies wins, if nothing applied before it); stackable ones add up. The total
    never exceeds the subtotal."""
    subtotal = sum(line.unit_price_amount * line.quantity for line in lines)
    promotions = [
        p for p in await repo.active_promotions(session, now) if p.currency is None or p.currency == currency
    ]
    rules: dict[uuid.UUID, list[PromotionRule]] = defaultdict(list)
    for rule in await repo.rules_of(session, [p.id for p in promotions]):
        rules[rule.promotion_id].append(rule)
    applied: list[AppliedPromotion] = []
    remaining = subtotal
    for promotion in promotions:
        amount = min(promotion_discount(promotion, rules[promotion.id], lines), remaining)
        if amount <= 0:
            continue
        if not promotion.stackable:
            if applied:
                continue
            applied.append(
                AppliedPromotion(promotion_id=promotion.id, name=promotion.name, discount_amount=amount)
            )
            break
        applied.append(
            AppliedPromotion(promotion_id=promotion.id, name=promotion.name, discount_amount=amount)
        )
        remaining -= amount
    return PromotionEvaluation(discount_amount=sum(a.discount_amount for a in applied), applied=applied)


async def record_promotion_usage(
    session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID, applied: Sequence[AppliedPromotion]
) -> int:
    """The promotions an order got (once per promotion and order). Returns the rows written."""
    return await repo.insert_promotion_usage(
        session,
        [
            {
                "id": uuid.uuid4(),
                "promotion_id": a.promotion_id,
                "order_id": order_id,
                "user_id": user_id,
                "discount_amount": a.discount_amount,
            }
            for a in applied
        ],
    )
