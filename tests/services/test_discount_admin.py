"""Discount administration on the real discount_db: unique coupon codes as a business refusal, coupon
listing with keyset pages, switching coupons and promotions off, and promotion rules whose params are
checked before they are stored (a malformed rule would break every cart's evaluation)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from core.db import SessionFactory
from services.discount import service
from services.discount.errors import CouponCodeTaken, CouponNotFound, PromotionNotFound
from services.discount.models import CouponType, PromotionType, RuleType
from services.discount.schemas import CartLineIn, CouponIn, PromotionIn, RuleIn


@pytest.fixture
def db(sessions: dict[str, SessionFactory]) -> SessionFactory:
    return sessions["discount"]


def new_code(prefix: str = "ADM") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10].upper()}"


async def test_a_taken_code_is_refused_and_nothing_changes(db: SessionFactory) -> None:
    code = new_code()
    async with db() as s, s.begin():
        assert await service.create_coupon(s, CouponIn(code=code, type=CouponType.PERCENTAGE, value=10))
    with pytest.raises(CouponCodeTaken):
        async with db() as s, s.begin():
            await service.create_coupon(s, CouponIn(code=code.lower(), type=CouponType.PERCENTAGE, value=50))
    async with db() as s, s.begin():  # the seed loader's way: an existing code is left alone
        assert not await service.create_coupon(
            s, CouponIn(code=code, type=CouponType.PERCENTAGE, value=50), skip_existing=True
        )
    async with db() as s:
        view = await service.get_coupon(s, code.lower())
    assert (view.code, view.value, view.times_used, view.is_active) == (code, 10, 0, True)


async def test_coupons_list_by_code_in_pages_and_switch_off(db: SessionFactory) -> None:
    prefix = new_code("PG")
    codes = [f"{prefix}{i}" for i in range(5)]
    async with db() as s, s.begin():
        for code in codes:
            await service.create_coupon(s, CouponIn(code=code, type=CouponType.FREE_SHIPPING, value=0))
    seen: list[str] = []
    cursor: str | None = prefix  # every code of this test sorts after its bare prefix
    async with db() as s:
        while cursor is not None and len(seen) < 5:
            page = await service.list_coupons(s, cursor=cursor, limit=2)
            seen += [c.code for c in page.items if c.code.startswith(prefix)]
            cursor = page.next_cursor
    assert seen == codes

    async with db() as s, s.begin():
        off = await service.set_coupon_active(s, codes[0], False)
    assert off.is_active is False
    async with db() as s:
        assert (
            await s.execute(text("SELECT is_active, version FROM coupons WHERE code = :c"), {"c": codes[0]})
        ).one() == (False, 2)
        inactive = await service.list_coupons(s, active=False, cursor=prefix, limit=200)
        assert codes[0] in [c.code for c in inactive.items]
        assert codes[1] not in [c.code for c in inactive.items]
        with pytest.raises(CouponNotFound):  # a switched-off coupon is not offered to shoppers
            await service.validate(s, codes[0], uuid.uuid4(), 5000, "USD", datetime.now(UTC))
    with pytest.raises(CouponNotFound):
        async with db() as s, s.begin():
            await service.set_coupon_active(s, new_code("NONE"), False)


@pytest.mark.parametrize(
    ("rule_type", "params"),
    [
        (RuleType.MIN_SUBTOTAL, {"amount": "a lot"}),
        (RuleType.MIN_SUBTOTAL, {}),
        (RuleType.CATEGORY, {"category_ids": 5}),
        (RuleType.CATEGORY, {"category_ids": []}),
        (RuleType.PRODUCT, {"product_ids": ["not-a-uuid"]}),
        (RuleType.BUY_X_GET_Y, {"buy": 0, "get": 1}),
        (RuleType.BUY_X_GET_Y, {"buy": 2, "get": 1, "extra": True}),
    ],
)
def test_rule_params_are_checked_by_rule_type(rule_type: RuleType, params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RuleIn(rule_type=rule_type, params=params)


def test_promotion_limits_fit_the_columns() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValidationError, match="ends_at"):
        PromotionIn(name="x", type=PromotionType.PERCENTAGE, value=5, starts_at=now, ends_at=now)
    with pytest.raises(ValidationError):
        PromotionIn(name="x", type=PromotionType.PERCENTAGE, value=5, priority=2**31)
    with pytest.raises(ValidationError):
        CouponIn(code="X", type=CouponType.PERCENTAGE, value=5, usage_limit_total=2**31)
    rule = RuleIn(rule_type=RuleType.PRODUCT, params={"product_ids": [str(uuid.UUID(int=1))]})
    assert rule.params == {"product_ids": [str(uuid.UUID(int=1))]}


async def test_promotions_list_get_and_switch_off(db: SessionFactory) -> None:
    product = uuid.uuid4()
    async with db() as s, s.begin():
        promotion_id = await service.create_promotion(
            s,
            PromotionIn(
                name="admin test: 20% on one product",
                type=PromotionType.PERCENTAGE,
                value=20,
                priority=7,
                stackable=True,
                ends_at=datetime.now(UTC) + timedelta(days=1),
                rules=[RuleIn(rule_type=RuleType.PRODUCT, params={"product_ids": [str(product)]})],
            ),
        )
    lines = [CartLineIn(product_id=product, unit_price_amount=1000, quantity=1)]
    async with db() as s:
        view = await service.get_promotion(s, promotion_id)
        assert view.rules[0].params == {"product_ids": [str(product)]} and view.is_active
        assert promotion_id in [p.id for p in await service.list_promotions(s, active=True, limit=500)]
        applied = await service.evaluate_promotions(s, lines, "USD", datetime.now(UTC))
        assert promotion_id in [a.promotion_id for a in applied.applied]
    async with db() as s, s.begin():
        off = await service.set_promotion_active(s, promotion_id, False)
    assert off.is_active is False
    async with db() as s:
        applied = await service.evaluate_promotions(s, lines, "USD", datetime.now(UTC))
        assert promotion_id not in [a.promotion_id for a in applied.applied]
        assert promotion_id in [p.id for p in await service.list_promotions(s, active=False, limit=500)]
        with pytest.raises(PromotionNotFound):
            await service.get_promotion(s, uuid.uuid4())
    with pytest.raises(PromotionNotFound):
        async with db() as s, s.begin():
            await service.set_promotion_active(s, uuid.uuid4(), True)
