"""Discount service on the real discount_db: coupon amounts and refusals, reservations whose limits
hold under concurrency (total and per customer), release / commit, idempotency, promotions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from temporalio.exceptions import ApplicationError

from activities.discount import (
    DiscountActivities,
    EvaluatePromotionsInput,
    OrderCouponInput,
    PreviewInput,
    RecordPromotionsInput,
    ReserveCouponInput,
)
from core.db import SessionFactory
from services.discount import service
from services.discount.demo import DEMO_COUPONS, load_demo_coupons
from services.discount.models import CouponType, PromotionType, RuleType, UsageStatus
from services.discount.schemas import CartLineIn, CouponIn, PromotionIn, RuleIn


@pytest.fixture
def acts(sessions: dict[str, SessionFactory]) -> DiscountActivities:
    return DiscountActivities(sessions["discount"])


@pytest.fixture
def db(sessions: dict[str, SessionFactory]) -> SessionFactory:
    return sessions["discount"]


def key() -> str:
    return f"checkout-{uuid.uuid4()}:coupon"


async def coupon(db: SessionFactory, **fields: Any) -> str:
    """A fresh coupon (unique code); returns its code."""
    values: dict[str, Any] = {
        "code": f"T{uuid.uuid4().hex[:12].upper()}",
        "type": CouponType.PERCENTAGE,
        "value": 10,
    }
    values.update(fields)
    async with db() as s, s.begin():
        assert await service.create_coupon(s, CouponIn.model_validate(values))
    return str(values["code"])


def reserve_input(
    code: str, user_id: uuid.UUID | None = None, subtotal: int = 5000, **extra: Any
) -> ReserveCouponInput:
    return ReserveCouponInput(
        idempotency_key=key(),
        code=code,
        user_id=user_id or uuid.uuid4(),
        order_id=uuid.uuid4(),
        subtotal_amount=subtotal,
        currency="USD",
        **extra,
    )


async def usage_state(db: SessionFactory, code: str) -> tuple[int, dict[str, int]]:
    """The coupon's times_used and its usages counted by status."""
    async with db() as s:
        used = (
            await s.execute(text("SELECT times_used FROM coupons WHERE code = :c"), {"c": code})
        ).scalar_one()
        rows = await s.execute(
            text(
                "SELECT u.status, count(*) FROM coupon_usage u JOIN coupons c ON c.id = u.coupon_id "
                "WHERE c.code = :c GROUP BY u.status"
            ),
            {"c": code},
        )
        return used, {r[0]: r[1] for r in rows}


async def refused(call: Any) -> str:
    with pytest.raises(ApplicationError) as err:
        await call
    assert err.value.non_retryable
    return str(err.value.type)


# -- amounts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, subtotal, expected, free_shipping",
    [
        ({"type": CouponType.PERCENTAGE, "value": 10}, 1999, 199, False),  # floor, integer math
        ({"type": CouponType.PERCENTAGE, "value": 50, "max_discount_amount": 700}, 5000, 700, False),
        ({"type": CouponType.PERCENTAGE, "value": 100}, 1234, 1234, False),
        ({"type": CouponType.FIXED_AMOUNT, "value": 500, "currency": "USD"}, 2000, 500, False),
        (
            {"type": CouponType.FIXED_AMOUNT, "value": 5000, "currency": "USD"},
            1200,
            1200,
            False,
        ),  # never > subtotal
        ({"type": CouponType.FREE_SHIPPING, "value": 0}, 800, 0, True),
    ],
)
async def test_preview_computes_the_discount(
    acts: DiscountActivities,
    db: SessionFactory,
    fields: dict[str, Any],
    subtotal: int,
    expected: int,
    free_shipping: bool,
) -> None:
    code = await coupon(db, **fields)
    quote = await acts.preview(
        PreviewInput(code=code.lower(), user_id=uuid.uuid4(), subtotal_amount=subtotal, currency="USD")
    )
    assert (quote.code, quote.discount_amount, quote.free_shipping) == (code, expected, free_shipping)
    assert await usage_state(db, code) == (0, {})  # a preview takes no slot


# -- refusals --------------------------------------------------------------------------------------------


async def test_each_refusal_has_its_type_and_writes_nothing(
    acts: DiscountActivities, db: SessionFactory
) -> None:
    now = datetime.now(UTC)
    cases = {
        "CouponNotFound": "NOSUCHCODE" + uuid.uuid4().hex[:8].upper(),
        "CouponExpired": await coupon(db, starts_at=now - timedelta(days=9), ends_at=now - timedelta(days=1)),
        "CouponNotYetValid": await coupon(db, starts_at=now + timedelta(days=1)),
        "CouponMinimumNotMet": await coupon(db, min_subtotal_amount=5001),
        "CouponCurrencyMismatch": await coupon(db, type=CouponType.FIXED_AMOUNT, value=100, currency="EUR"),
    }
    inactive = await coupon(db, is_active=False)
    for expected, code in [*cases.items(), ("CouponNotFound", inactive)]:
        preview = PreviewInput(code=code, user_id=uuid.uuid4(), subtotal_amount=5000, currency="USD")
        assert await refused(acts.preview(preview)) == expected
        inp = reserve_input(code)
        assert await refused(acts.reserve_coupon(inp)) == expected
        async with db() as s:
            assert (
                await s.execute(
                    text("SELECT count(*) FROM coupon_usage WHERE order_id = :o"), {"o": inp.order_id}
                )
            ).scalar() == 0
            assert (
                await s.execute(
                    text("SELECT count(*) FROM idempotency_keys WHERE key = :k"), {"k": inp.idempotency_key}
                )
            ).scalar() == 0

    exhausted = await coupon(db, usage_limit_total=1)
    await acts.reserve_coupon(reserve_input(exhausted))
    assert await refused(acts.reserve_coupon(reserve_input(exhausted))) == "CouponExhausted"
    assert (
        await refused(
            acts.preview(
                PreviewInput(code=exhausted, user_id=uuid.uuid4(), subtotal_amount=5000, currency="USD")
            )
        )
        == "CouponExhausted"
    )

    once = await coupon(db, usage_limit_per_customer=1)
    user = uuid.uuid4()
    await acts.reserve_coupon(reserve_input(once, user))
    assert await refused(acts.reserve_coupon(reserve_input(once, user))) == "CouponPerCustomerLimitReached"
    await acts.reserve_coupon(reserve_input(once))  # another customer may
    assert await usage_state(db, once) == (2, {"reserved": 2})


@pytest.mark.parametrize(
    "model, values",
    [
        (ReserveCouponInput, {"subtotal_amount": -1}),
        (ReserveCouponInput, {"currency": "usd"}),
        (ReserveCouponInput, {"code": ""}),
        (ReserveCouponInput, {"idempotency_key": ""}),
        (CouponIn, {"code": "BAD CODE", "type": "percentage", "value": 10}),
        (CouponIn, {"code": "P0", "type": "percentage", "value": 0}),
        (CouponIn, {"code": "P150", "type": "percentage", "value": 150}),
        (CouponIn, {"code": "FIX", "type": "fixed_amount", "value": 500}),  # no currency
        (CouponIn, {"code": "FS", "type": "free_shipping", "value": 5}),
        (CouponIn, {"code": "L0", "type": "percentage", "value": 5, "usage_limit_total": 0}),
    ],
)
def test_invalid_input_is_refused(model: type[Any], values: dict[str, Any]) -> None:
    base = {
        "idempotency_key": "k",
        "code": "X",
        "user_id": uuid.uuid4(),
        "order_id": uuid.uuid4(),
        "subtotal_amount": 100,
        "currency": "USD",
    }
    with pytest.raises(ValidationError):
        model.model_validate((base if model is ReserveCouponInput else {}) | values)


async def test_the_database_refuses_a_count_above_the_limit(db: SessionFactory) -> None:
    code = await coupon(db, usage_limit_total=2)
    async with db() as s, s.begin():
        with pytest.raises(IntegrityError, match="ck_coupons_times_used"):
            await s.execute(text("UPDATE coupons SET times_used = 3 WHERE code = :c"), {"c": code})


# -- concurrency -------------------------------------------------------------------------------------------


async def test_30_concurrent_reservations_of_a_coupon_limited_to_5(
    acts: DiscountActivities, db: SessionFactory
) -> None:
    code = await coupon(db, usage_limit_total=5)
    results = await asyncio.gather(
        *(acts.reserve_coupon(reserve_input(code)) for _ in range(30)), return_exceptions=True
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(ok) == 5
    assert all(isinstance(e, ApplicationError) and e.type == "CouponExhausted" for e in errors), errors
    assert await usage_state(db, code) == (5, {"reserved": 5})


async def test_per_customer_limit_holds_under_concurrency(
    acts: DiscountActivities, db: SessionFactory
) -> None:
    code = await coupon(db, usage_limit_per_customer=2, usage_limit_total=100)
    user = uuid.uuid4()
    results = await asyncio.gather(
        *(acts.reserve_coupon(reserve_input(code, user)) for _ in range(12)), return_exceptions=True
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(ok) == 2
    assert all(
        isinstance(e, ApplicationError) and e.type == "CouponPerCustomerLimitReached" for e in errors
    ), errors
    assert await usage_state(db, code) == (2, {"reserved": 2})


# -- release / commit -------------------------------------------------------------------------------------


async def test_release_frees_the_slot(acts: DiscountActivities, db: SessionFactory) -> None:
    code = await coupon(db, usage_limit_total=1)
    first = reserve_input(code)
    reservation = await acts.reserve_coupon(first)
    assert reservation.status == UsageStatus.RESERVED and reservation.discount_amount == 500
    assert await refused(acts.reserve_coupon(reserve_input(code))) == "CouponExhausted"

    released = await acts.release_coupon(OrderCouponInput(idempotency_key=key(), order_id=first.order_id))
    assert (released.found, released.released) == (True, 1)
    assert await usage_state(db, code) == (0, {"released": 1})
    again = await acts.release_coupon(OrderCouponInput(idempotency_key=key(), order_id=first.order_id))
    assert (again.found, again.released) == (True, 0)
    assert await usage_state(db, code) == (0, {"released": 1})

    await acts.reserve_coupon(reserve_input(code))  # the slot is free again
    assert await usage_state(db, code) == (1, {"released": 1, "reserved": 1})

    # Compensating a reserve step that never happened is a no-op.
    nothing = await acts.release_coupon(OrderCouponInput(idempotency_key=key(), order_id=uuid.uuid4()))
    assert (nothing.found, nothing.released) == (False, 0)


async def test_a_released_order_can_reserve_again(acts: DiscountActivities, db: SessionFactory) -> None:
    code = await coupon(db, usage_limit_total=3)
    inp = reserve_input(code)
    await acts.reserve_coupon(inp)
    await acts.release_coupon(OrderCouponInput(idempotency_key=key(), order_id=inp.order_id))
    again = await acts.reserve_coupon(inp.model_copy(update={"idempotency_key": key()}))
    assert again.status == UsageStatus.RESERVED
    assert await usage_state(db, code) == (1, {"reserved": 1})


async def test_commit_keeps_the_slot_and_is_idempotent(acts: DiscountActivities, db: SessionFactory) -> None:
    code = await coupon(db, usage_limit_total=2)
    inp = reserve_input(code)
    reservation = await acts.reserve_coupon(inp)
    committed = await acts.commit_coupon(OrderCouponInput(idempotency_key=key(), order_id=inp.order_id))
    assert committed.committed and committed.coupon_id == reservation.coupon_id
    assert not (
        await acts.commit_coupon(OrderCouponInput(idempotency_key=key(), order_id=inp.order_id))
    ).committed
    released = await acts.release_coupon(OrderCouponInput(idempotency_key=key(), order_id=inp.order_id))
    assert released.released == 0  # a placed order keeps its use
    assert await usage_state(db, code) == (1, {"committed": 1})

    other = reserve_input(code)
    await acts.reserve_coupon(other)
    await acts.release_coupon(OrderCouponInput(idempotency_key=key(), order_id=other.order_id))
    assert (
        await refused(acts.commit_coupon(OrderCouponInput(idempotency_key=key(), order_id=other.order_id)))
        == "CouponReservationReleased"
    )
    assert (
        await refused(acts.commit_coupon(OrderCouponInput(idempotency_key=key(), order_id=uuid.uuid4())))
        == "CouponUsageNotFound"
    )


async def test_reserve_is_idempotent(acts: DiscountActivities, db: SessionFactory) -> None:
    code = await coupon(db, usage_limit_total=10)
    inp = reserve_input(code)
    first = await acts.reserve_coupon(inp)
    assert await acts.reserve_coupon(inp) == first
    # the same order under another key gets its existing reservation, not a second slot
    assert (
        await acts.reserve_coupon(inp.model_copy(update={"idempotency_key": key()}))
    ).usage_id == first.usage_id
    assert await usage_state(db, code) == (1, {"reserved": 1})
    assert (
        await refused(acts.reserve_coupon(inp.model_copy(update={"subtotal_amount": 1})))
        == "IdempotencyKeyReused"
    )


async def test_expired_reservations_are_swept(db: SessionFactory) -> None:
    code = await coupon(db, usage_limit_total=1)
    order_id = uuid.uuid4()
    past = datetime.now(UTC) - service.RESERVATION_TTL - timedelta(minutes=1)
    async with db() as s, s.begin():
        await service.reserve(s, code, uuid.uuid4(), order_id, 5000, "USD", past)
    async with db() as s, s.begin():
        assert await service.release_expired(s, datetime.now(UTC)) >= 1
    assert await usage_state(db, code) == (0, {"released": 1})


# -- promotions --------------------------------------------------------------------------------------------


async def test_promotions_stack_by_priority(acts: DiscountActivities, db: SessionFactory) -> None:
    category, product, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with db() as s, s.begin():
        ten_percent = await service.create_promotion(
            s,
            PromotionIn(
                name="10% on the category from 30.00",
                type=PromotionType.PERCENTAGE,
                value=10,
                priority=5,
                stackable=True,
                rules=[
                    RuleIn(rule_type=RuleType.CATEGORY, params={"category_ids": [str(category)]}),
                    RuleIn(rule_type=RuleType.MIN_SUBTOTAL, params={"amount": 3000}),
                ],
            ),
        )
        three_for_two = await service.create_promotion(
            s,
            PromotionIn(
                name="3 for 2",
                type=PromotionType.PERCENTAGE,
                value=100,
                priority=3,
                stackable=True,
                rules=[
                    RuleIn(rule_type=RuleType.PRODUCT, params={"product_ids": [str(product)]}),
                    RuleIn(rule_type=RuleType.BUY_X_GET_Y, params={"buy": 2, "get": 1}),
                ],
            ),
        )
        half = await service.create_promotion(
            s,
            PromotionIn(
                name="half price, alone",
                type=PromotionType.PERCENTAGE,
                value=50,
                priority=1,
                rules=[RuleIn(rule_type=RuleType.CATEGORY, params={"category_ids": [str(category)]})],
            ),
        )

    def lines(quantity: int) -> list[CartLineIn]:
        return [
            CartLineIn(
                product_id=product, category_ids=[category], unit_price_amount=1000, quantity=quantity
            ),
            CartLineIn(product_id=other, category_ids=[category], unit_price_amount=500, quantity=1),
        ]

    big = await acts.evaluate_promotions(EvaluatePromotionsInput(currency="USD", lines=lines(3)))
    # 10% of 3500 = 350, plus one of three units free = 1000; the exclusive one does not join
    assert [(a.promotion_id, a.discount_amount) for a in big.applied] == [
        (ten_percent, 350),
        (three_for_two, 1000),
    ]
    assert big.discount_amount == 1350

    small = await acts.evaluate_promotions(EvaluatePromotionsInput(currency="USD", lines=lines(2)))
    assert [(a.promotion_id, a.discount_amount) for a in small.applied] == [(half, 1250)]

    unrelated = await acts.evaluate_promotions(
        EvaluatePromotionsInput(
            currency="USD", lines=[CartLineIn(product_id=uuid.uuid4(), unit_price_amount=9999, quantity=3)]
        )
    )
    assert not {a.promotion_id for a in unrelated.applied} & {ten_percent, three_for_two, half}

    order_id = uuid.uuid4()
    record = RecordPromotionsInput(
        idempotency_key=key(), order_id=order_id, user_id=uuid.uuid4(), applied=big.applied
    )
    assert (await acts.record_promotions(record)).recorded == 2
    assert (await acts.record_promotions(record)).recorded == 2  # same key: the first result
    async with db() as s:
        rows = (
            await s.execute(
                text("SELECT count(*), sum(discount_amount) FROM promotion_usage WHERE order_id = :o"),
                {"o": order_id},
            )
        ).one()
    assert tuple(rows) == (2, 1350)


# -- demo data ------------------------------------------------------------------------------------------


async def test_demo_coupons_load_once(db: SessionFactory) -> None:
    async with db() as s, s.begin():
        first = await load_demo_coupons(s)
    async with db() as s, s.begin():
        assert await load_demo_coupons(s) == []
    assert set(first) <= {c.code for c in DEMO_COUPONS}
    async with db() as s:
        found = dict(
            (r[0], tuple(r[1:]))
            for r in await s.execute(
                text(
                    "SELECT code, type, value, min_subtotal_amount, usage_limit_total, usage_limit_per_customer "
                    "FROM coupons WHERE code IN ('WELCOME10', 'SAVE5', 'FREESHIP', 'LIMITED', 'ONEPER')"
                )
            )
        )
    assert found == {
        "WELCOME10": ("percentage", 10, 0, None, None),
        "SAVE5": ("fixed_amount", 500, 2000, None, None),
        "FREESHIP": ("free_shipping", 0, 0, None, None),
        "LIMITED": ("percentage", 15, 0, 20, None),
        "ONEPER": ("percentage", 20, 0, None, 1),
    }
