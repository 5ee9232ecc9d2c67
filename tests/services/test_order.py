"""Order service on the real order_db: creation and totals, hash partition routing, the status state
machine with its history (monthly partitions), returns, lookups and pagination, idempotency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from temporalio.exceptions import ApplicationError

from activities.order import (
    CancelOrderInput,
    ConfirmOrderInput,
    CreateOrderInput,
    EnsurePartitionsInput,
    FailOrderInput,
    GetOrderInput,
    OrderActivities,
    RecordReturnInput,
    SetOrderStatusInput,
)
from core.db import SessionFactory
from core.partitions import add_months, month_start, monthly_partition_name
from services.order import service
from services.order.models import OrderStatus
from services.order.schemas import ReturnLineIn

S = OrderStatus


@pytest.fixture
def acts(sessions: dict[str, SessionFactory]) -> OrderActivities:
    return OrderActivities(sessions["order"])


@pytest.fixture
def db(sessions: dict[str, SessionFactory]) -> SessionFactory:
    return sessions["order"]


def key() -> str:
    return f"checkout-{uuid.uuid4()}:step"


def order_input(user_id: uuid.UUID | None = None, **overrides: Any) -> CreateOrderInput:
    values: dict[str, Any] = {
        "idempotency_key": key(),
        "order_id": uuid.uuid4(),
        "user_id": user_id or uuid.uuid4(),
        "cart_id": uuid.uuid4(),
        "workflow_id": f"checkout-{uuid.uuid4()}",
        "currency": "USD",
        "lines": [
            {
                "product_id": uuid.uuid4(),
                "sku": "TEE-M",
                "name": "T-shirt",
                "unit_price_amount": 1999,
                "quantity": 2,
            },
            {
                "product_id": uuid.uuid4(),
                "sku": "MUG",
                "name": "Mug",
                "unit_price_amount": 1001,
                "quantity": 1,
            },
        ],
        "subtotal_amount": 4999,
        "discount_amount": 500,
        "shipping_amount": 700,
        "tax_amount": 360,
        "total_amount": 4999 - 500 + 700 + 360,
        "coupon_code": "SAVE5",
        "shipping_address": {
            "recipient_name": "Ada Lovelace",
            "line1": "12 St James's Square",
            "city": "London",
            "postal_code": "SW1Y 4JH",
            "country_code": "GB",
        },
    }
    values.update(overrides)
    return CreateOrderInput.model_validate(values)


async def scalar(db: SessionFactory, sql: str, **params: Any) -> Any:
    async with db() as s:
        return (await s.execute(text(sql), params)).scalar()


async def rows(db: SessionFactory, sql: str, **params: Any) -> list[Any]:
    async with db() as s:
        return list((await s.execute(text(sql), params)).all())


async def history(db: SessionFactory, order_id: uuid.UUID) -> list[tuple[str | None, str]]:
    found = await rows(
        db,
        "SELECT from_status, to_status FROM order_status_history WHERE order_id = :o ORDER BY created_at, id",
        o=order_id,
    )
    return [(r[0], r[1]) for r in found]


async def created(
    acts: OrderActivities, user_id: uuid.UUID | None = None, **overrides: Any
) -> CreateOrderInput:
    inp = order_input(user_id, **overrides)
    await acts.create(inp)
    return inp


def status_input(inp: CreateOrderInput, status: OrderStatus, **extra: Any) -> SetOrderStatusInput:
    return SetOrderStatusInput(
        idempotency_key=key(), order_id=inp.order_id, user_id=inp.user_id, status=status, **extra
    )


# -- creation -------------------------------------------------------------------------------------


async def test_create_writes_order_items_address_and_history(
    acts: OrderActivities, db: SessionFactory
) -> None:
    inp = order_input()
    result = await acts.create(inp)

    assert result.order_id == inp.order_id and result.status == S.PENDING_PAYMENT
    assert result.order_number.startswith(f"SO-{datetime.now(UTC).year}-")
    [order] = await rows(
        db,
        "SELECT status, total_amount, version, order_number, coupon_code FROM orders WHERE id = :o AND user_id = :u",
        o=inp.order_id,
        u=inp.user_id,
    )
    assert tuple(order) == ("pending_payment", 5559, 1, result.order_number, "SAVE5")
    items = await rows(
        db,
        "SELECT sku, line_amount, discount_amount, returned_quantity FROM order_items "
        "WHERE order_id = :o ORDER BY line_no",
        o=inp.order_id,
    )
    # 500 allocated in proportion to 3998 and 1001: 399.9.. and 100.1.. -> 400 + 100
    assert [tuple(i) for i in items] == [("TEE-M", 3998, 400, 0), ("MUG", 1001, 100, 0)]
    assert (
        await scalar(db, "SELECT city FROM shipping_addresses WHERE order_id = :o", o=inp.order_id)
        == "London"
    )
    assert await history(db, inp.order_id) == [(None, "pending_payment")]

    view = await acts.get(GetOrderInput(order_id=inp.order_id))
    assert view.user_id == inp.user_id and [i.returnable_quantity for i in view.items] == [2, 1]
    assert view.shipping_address is not None and view.shipping_address.country_code == "GB"


async def test_orders_land_in_the_hash_partition_of_their_user(
    acts: OrderActivities, db: SessionFactory
) -> None:
    users = [uuid.uuid4() for _ in range(16)]
    orders = [await created(acts, u) for u in users]
    orders.append(await created(acts, users[0]))  # a second order of the first user
    placed = await rows(
        db,
        "SELECT id, user_id, tableoid::regclass::text FROM orders WHERE id = ANY(:ids)",
        ids=[o.order_id for o in orders],
    )
    assert len(placed) == len(orders)
    for _, user_id, partition in placed:
        assert partition.startswith("orders_p")
        remainder = int(partition.removeprefix("orders_p"))
        # PostgreSQL's own routing function agrees that this row belongs to this partition
        assert await scalar(
            db,
            "SELECT satisfies_hash_partition('orders'::regclass, 8, :r, CAST(:u AS uuid))",
            r=remainder,
            u=user_id,
        )
    by_user: dict[uuid.UUID, set[str]] = {}
    for _, user_id, partition in placed:
        by_user.setdefault(user_id, set()).add(partition)
    assert all(len(p) == 1 for p in by_user.values())  # one user, one partition
    assert len({p for _, _, p in placed}) > 1  # 16 users spread over several partitions


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"subtotal_amount": 5000, "total_amount": 5000 - 500 + 700 + 360}, "subtotal_amount"),
        ({"total_amount": 5558}, "total_amount"),
        ({"discount_amount": 6000, "total_amount": 0}, "discount_amount"),
    ],
)
async def test_inconsistent_totals_are_refused_and_nothing_is_written(
    acts: OrderActivities, db: SessionFactory, overrides: dict[str, Any], field: str
) -> None:
    inp = order_input(**overrides)
    with pytest.raises(ApplicationError) as err:
        await acts.create(inp)
    assert err.value.type == "InvalidOrderTotals" and err.value.non_retryable
    assert field in err.value.details[0]["problems"]
    assert await scalar(db, "SELECT count(*) FROM orders WHERE id = :o", o=inp.order_id) == 0
    assert await scalar(db, "SELECT count(*) FROM order_items WHERE order_id = :o", o=inp.order_id) == 0
    assert (
        await scalar(db, "SELECT count(*) FROM idempotency_keys WHERE key = :k", k=inp.idempotency_key) == 0
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"currency": "usd"},
        {"lines": []},
        {
            "lines": [
                {
                    "product_id": str(uuid.uuid4()),
                    "sku": "X",
                    "name": "X",
                    "unit_price_amount": 5,
                    "quantity": 0,
                }
            ]
        },
        {"shipping_amount": -1},
        {"idempotency_key": ""},
    ],
)
def test_invalid_input_is_refused_before_anything_runs(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        order_input(**overrides)


async def test_create_is_idempotent_by_key(acts: OrderActivities, db: SessionFactory) -> None:
    inp = order_input()
    first = await acts.create(inp)
    again = await acts.create(inp)
    assert again == first
    assert await scalar(db, "SELECT count(*) FROM orders WHERE id = :o", o=inp.order_id) == 1
    assert (
        await scalar(db, "SELECT count(*) FROM order_status_history WHERE order_id = :o", o=inp.order_id) == 1
    )

    with pytest.raises(ApplicationError) as err:
        await acts.create(inp.model_copy(update={"tax_amount": 0, "total_amount": 5199}))
    assert err.value.type == "IdempotencyKeyReused"
    with pytest.raises(ApplicationError) as err:  # same order id under another key
        await acts.create(inp.model_copy(update={"idempotency_key": key()}))
    assert err.value.type == "OrderAlreadyExists"


# -- state machine -----------------------------------------------------------------------------------


async def test_the_happy_path_through_the_state_machine(acts: OrderActivities, db: SessionFactory) -> None:
    inp = await created(acts)
    payment_id, shipment_id = uuid.uuid4(), uuid.uuid4()
    confirmed = await acts.confirm(
        ConfirmOrderInput(
            idempotency_key=key(), order_id=inp.order_id, user_id=inp.user_id, payment_id=payment_id
        )
    )
    assert (confirmed.status, confirmed.previous_status, confirmed.version) == (
        S.CONFIRMED,
        S.PENDING_PAYMENT,
        2,
    )
    await acts.set_status(status_input(inp, S.SHIPPED, shipment_id=shipment_id))
    await acts.set_status(status_input(inp, S.DELIVERED))

    [row] = await rows(
        db,
        "SELECT status, version, payment_id, shipment_id, confirmed_at IS NOT NULL, shipped_at IS NOT NULL, "
        "delivered_at IS NOT NULL FROM orders WHERE id = :o AND user_id = :u",
        o=inp.order_id,
        u=inp.user_id,
    )
    assert tuple(row) == ("delivered", 4, payment_id, shipment_id, True, True, True)
    assert await history(db, inp.order_id) == [
        (None, "pending_payment"),
        ("pending_payment", "confirmed"),
        ("confirmed", "shipped"),
        ("shipped", "delivered"),
    ]


async def test_history_rows_live_in_the_partition_of_their_month(
    acts: OrderActivities, db: SessionFactory
) -> None:
    inp = await created(acts)
    await acts.fail(
        FailOrderInput(idempotency_key=key(), order_id=inp.order_id, user_id=inp.user_id, reason="x")
    )
    found = await rows(
        db,
        "SELECT tableoid::regclass::text, created_at FROM order_status_history WHERE order_id = :o",
        o=inp.order_id,
    )
    assert len(found) == 2
    for partition, created_at in found:
        assert partition == monthly_partition_name("order_status_history", month_start(created_at.date()))


@pytest.mark.parametrize(
    "path, target",
    [
        ([], S.SHIPPED),
        ([], S.DELIVERED),
        ([S.CONFIRMED], S.PENDING_PAYMENT),
        ([S.CONFIRMED], S.FAILED),
        ([S.CONFIRMED, S.SHIPPED], S.CANCELLED),
        ([S.CANCELLED], S.CONFIRMED),
    ],
)
async def test_invalid_transitions_are_refused_and_change_nothing(
    acts: OrderActivities, db: SessionFactory, path: list[OrderStatus], target: OrderStatus
) -> None:
    inp = await created(acts)
    for status in path:
        await acts.set_status(status_input(inp, status))
    before = await rows(db, "SELECT status, version FROM orders WHERE id = :o", o=inp.order_id)
    with pytest.raises(ApplicationError) as err:
        await acts.set_status(status_input(inp, target))
    assert err.value.type == "InvalidOrderTransition" and err.value.non_retryable
    assert await rows(db, "SELECT status, version FROM orders WHERE id = :o", o=inp.order_id) == before
    assert len(await history(db, inp.order_id)) == 1 + len(path)


def test_transition_table_covers_every_status() -> None:
    assert set(service.TRANSITIONS) == set(OrderStatus)
    for target in OrderStatus:
        assert not service.can_transition(S.CANCELLED, target)
        assert not service.can_transition(S.FAILED, target)
    assert service.can_transition(S.PENDING_PAYMENT, S.FAILED)
    assert not service.can_transition(S.SHIPPED, S.CANCELLED)


async def test_fail_is_the_checkout_compensation(acts: OrderActivities, db: SessionFactory) -> None:
    inp = await created(acts)
    failed = await acts.fail(
        FailOrderInput(
            idempotency_key=key(), order_id=inp.order_id, user_id=inp.user_id, reason="card declined"
        )
    )
    assert failed.changed and failed.status == S.FAILED
    assert tuple(
        (
            await rows(
                db,
                "SELECT status, failure_reason, failed_at IS NOT NULL FROM orders WHERE id = :o",
                o=inp.order_id,
            )
        )[0]
    ) == ("failed", "card declined", True)
    again = await acts.fail(
        FailOrderInput(idempotency_key=key(), order_id=inp.order_id, user_id=inp.user_id, reason="retry")
    )
    assert not again.changed and again.status == S.FAILED
    assert len(await history(db, inp.order_id)) == 2

    # The create step may never have happened: compensating it is a no-op, not an error.
    ghost = uuid.uuid4()
    absent = await acts.fail(
        FailOrderInput(idempotency_key=key(), order_id=ghost, user_id=uuid.uuid4(), reason="x")
    )
    assert not absent.found and not absent.changed
    assert await scalar(db, "SELECT count(*) FROM orders WHERE id = :o", o=ghost) == 0


async def test_shopper_cancel_before_shipping_only(acts: OrderActivities, db: SessionFactory) -> None:
    inp = await created(acts)
    await acts.set_status(status_input(inp, S.CONFIRMED))
    cancelled = await acts.cancel(
        CancelOrderInput(
            idempotency_key=key(),
            order_id=inp.order_id,
            user_id=inp.user_id,
            reason="changed my mind",
            actor="shopper",
        )
    )
    assert cancelled.status == S.CANCELLED
    assert await history(db, inp.order_id) == [
        (None, "pending_payment"),
        ("pending_payment", "confirmed"),
        ("confirmed", "cancelled"),
    ]
    assert (
        await scalar(
            db,
            "SELECT actor FROM order_status_history WHERE order_id = :o AND to_status = 'cancelled'",
            o=inp.order_id,
        )
        == "shopper"
    )

    shipped = await created(acts)
    await acts.set_status(status_input(shipped, S.CONFIRMED))
    await acts.set_status(status_input(shipped, S.SHIPPED))
    with pytest.raises(ApplicationError) as err:
        await acts.cancel(
            CancelOrderInput(
                idempotency_key=key(), order_id=shipped.order_id, user_id=shipped.user_id, reason="late"
            )
        )
    assert err.value.type == "InvalidOrderTransition"


async def test_concurrent_confirm_and_fail_one_wins(acts: OrderActivities, db: SessionFactory) -> None:
    inp = await created(acts)
    results = await asyncio.gather(
        acts.confirm(
            ConfirmOrderInput(
                idempotency_key=key(), order_id=inp.order_id, user_id=inp.user_id, payment_id=uuid.uuid4()
            )
        ),
        acts.fail(
            FailOrderInput(
                idempotency_key=key(), order_id=inp.order_id, user_id=inp.user_id, reason="timeout"
            )
        ),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], ApplicationError)
    assert errors[0].type == "InvalidOrderTransition"
    assert await scalar(db, "SELECT version FROM orders WHERE id = :o", o=inp.order_id) == 2
    assert len(await history(db, inp.order_id)) == 2


async def test_set_status_same_key_twice_has_one_effect(acts: OrderActivities, db: SessionFactory) -> None:
    inp = await created(acts)
    step = status_input(inp, S.CONFIRMED)
    first = await acts.set_status(step)
    assert await acts.set_status(step) == first
    assert await scalar(db, "SELECT version FROM orders WHERE id = :o", o=inp.order_id) == 2


# -- returns ------------------------------------------------------------------------------------------


async def test_returns_count_per_item_and_move_the_status(acts: OrderActivities, db: SessionFactory) -> None:
    inp = await created(acts)
    for status in (S.CONFIRMED, S.SHIPPED, S.DELIVERED):
        await acts.set_status(status_input(inp, status))
    view = await acts.get(GetOrderInput(order_id=inp.order_id, user_id=inp.user_id))
    tee, mug = view.items

    def ret(*lines: tuple[uuid.UUID, int]) -> RecordReturnInput:
        return RecordReturnInput(
            idempotency_key=key(),
            order_id=inp.order_id,
            user_id=inp.user_id,
            items=[ReturnLineIn(order_item_id=i, quantity=q) for i, q in lines],
        )

    partial = await acts.record_return(ret((tee.id, 1)))
    assert partial.status == S.PARTIALLY_RETURNED
    assert [(i.returned_quantity, i.returnable_quantity) for i in partial.items] == [(1, 1)]

    with pytest.raises(ApplicationError) as err:
        await acts.record_return(ret((tee.id, 1), (mug.id, 2)))
    assert err.value.type == "ReturnQuantityExceeded"
    assert await scalar(db, "SELECT returned_quantity FROM order_items WHERE id = :i", i=tee.id) == 1

    with pytest.raises(ApplicationError) as err:
        await acts.record_return(ret((uuid.uuid4(), 1)))
    assert err.value.type == "OrderItemNotFound"

    done = await acts.record_return(ret((tee.id, 1), (mug.id, 1)))
    assert done.status == S.RETURNED
    view = await acts.get(GetOrderInput(order_id=inp.order_id))
    assert [i.returnable_quantity for i in view.items] == [0, 0]
    assert [h.to_status for h in view.history][-2:] == [S.PARTIALLY_RETURNED, S.RETURNED]


async def test_returns_are_refused_before_delivery(acts: OrderActivities) -> None:
    inp = await created(acts)
    view = await acts.get(GetOrderInput(order_id=inp.order_id))
    with pytest.raises(ApplicationError) as err:
        await acts.record_return(
            RecordReturnInput(
                idempotency_key=key(),
                order_id=inp.order_id,
                user_id=inp.user_id,
                items=[ReturnLineIn(order_item_id=view.items[0].id, quantity=1)],
            )
        )
    assert err.value.type == "InvalidOrderTransition"


# -- reads ---------------------------------------------------------------------------------------------


async def test_get_of_another_users_order_is_not_found(acts: OrderActivities) -> None:
    inp = await created(acts)
    with pytest.raises(ApplicationError) as err:
        await acts.get(GetOrderInput(order_id=inp.order_id, user_id=uuid.uuid4()))
    assert err.value.type == "OrderNotFound"


async def test_list_a_users_orders_with_cursor_and_status_filter(
    acts: OrderActivities, db: SessionFactory
) -> None:
    user = uuid.uuid4()
    orders = [await created(acts, user) for _ in range(5)]
    for inp in orders[:2]:
        await acts.set_status(status_input(inp, S.CONFIRMED))
    await created(acts)  # someone else's

    async with db() as s:
        seen: list[uuid.UUID] = []
        cursor = None
        while True:
            page = await service.list_orders(s, user_id=user, cursor=cursor, limit=2)
            seen += [o.id for o in page.orders]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == [o.order_id for o in reversed(orders)]  # newest first, each once

        confirmed = await service.list_orders(s, user_id=user, statuses=[S.CONFIRMED], limit=10)
        assert {o.id for o in confirmed.orders} == {o.order_id for o in orders[:2]}
        assert confirmed.next_cursor is None

        by_number = await service.get_order_by_number(
            s, (await acts.get(GetOrderInput(order_id=orders[3].order_id))).order_number
        )
        assert by_number.id == orders[3].order_id

        pending: set[uuid.UUID] = set()
        cursor = None
        while True:  # support's list by status, across users
            page = await service.list_orders(
                s, user_id=None, statuses=[S.PENDING_PAYMENT], cursor=cursor, limit=50
            )
            pending |= {o.id for o in page.orders}
            if (cursor := page.next_cursor) is None:
                break
        assert {o.order_id for o in orders[2:]} <= pending
        assert not {o.order_id for o in orders[:2]} & pending


async def test_the_seed_index_serves_a_users_orders_by_status(db: SessionFactory) -> None:
    async with db() as s:
        await s.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            r[0]
            for r in await s.execute(
                text("EXPLAIN SELECT id FROM orders WHERE user_id = :u AND status = 'confirmed'"),
                {"u": uuid.uuid4()},
            )
        )
    # the partition's copy of idx_orders_user_status (orders_pN_user_id_status_idx)
    assert "_user_id_status_idx" in plan, plan


async def test_ensure_partitions_creates_months_ahead_once(acts: OrderActivities, db: SessionFactory) -> None:
    far = monthly_partition_name("order_status_history", add_months(month_start(date.today()), 9))
    first = await acts.ensure_partitions(EnsurePartitionsInput(months_ahead=9))
    assert far in first.existing
    assert await scalar(db, "SELECT count(*) FROM pg_class WHERE relname = :n", n=far) == 1
    again = await acts.ensure_partitions(EnsurePartitionsInput(months_ahead=9))
    assert again.created == [] and again.existing == first.existing
