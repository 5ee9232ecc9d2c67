"""The scheduled jobs on the running platform: partition maintenance creates the coming months'
partitions of the time-partitioned tables; the maintenance sweeps release what expired."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text
from temporalio.client import ScheduleActionStartWorkflow

from core.db import SessionFactory
from core.partitions import add_months, month_start, monthly_partition_ddl, monthly_partition_name
from core.registry import SAGAS_TASK_QUEUE
from services.cart import service as cart_service
from services.discount import service as discount_service
from services.discount.schemas import CouponIn
from services.product import service as product_service
from services.product.schemas import StockLine
from tests.conftest import Stack, record_history
from tests.factories import stocked_variant
from workflows.maintenance import (
    MaintenanceInput,
    MaintenanceResult,
    MaintenanceWorkflow,
)
from workflows.partition_maintenance import (
    PartitionMaintenanceInput,
    PartitionMaintenanceWorkflow,
)

MONTHLY = (
    ("auth", "security_audit_logs"),
    ("order", "order_status_history"),
    ("notification", "notifications"),
)
AHEAD = 6  # beyond the 3 months the migrations and the daily schedule create


async def _children(sessions: dict[str, SessionFactory], service: str, parent: str) -> set[str]:
    async with sessions[service]() as s:
        rows = await s.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:parent AS regclass)"
            ),
            {"parent": parent},
        )
        return {r[0] for r in rows}


async def test_partition_maintenance_creates_the_coming_months(
    stack: Stack, sessions: dict[str, SessionFactory]
) -> None:
    schedule = await stack.client.get_schedule_handle("partition-maintenance").describe()
    assert isinstance(schedule.schedule.action, ScheduleActionStartWorkflow)
    assert schedule.schedule.action.workflow == "partition-maintenance"

    this_month = month_start(datetime.now(UTC).date())
    wanted = {
        (service, parent): {
            monthly_partition_name(parent, add_months(this_month, k)) for k in range(AHEAD + 1)
        }
        for service, parent in MONTHLY
    }
    # A month far past the retention (13 months by default) in the two tables that have one.
    expired = {"auth": "security_audit_logs", "notification": "notifications"}
    for service, parent in expired.items():
        async with sessions[service]() as s, s.begin():
            await s.execute(text(monthly_partition_ddl(parent, date(2018, 1, 1))))
    workflow_id = f"partition-maintenance-test-{uuid.uuid4()}"
    result = await stack.client.execute_workflow(
        PartitionMaintenanceWorkflow.run,
        PartitionMaintenanceInput(months_ahead=AHEAD),
        id=workflow_id,
        task_queue=SAGAS_TASK_QUEUE,
        execution_timeout=timedelta(seconds=60),
    )
    for (service, parent), names in wanted.items():
        children = await _children(sessions, service, parent)
        assert names <= children, f"{parent} lacks {sorted(names - children)}"
        assert set(result.created[service]) <= names
    for service, parent in expired.items():
        name = monthly_partition_name(parent, date(2018, 1, 1))
        assert name in result.dropped[service] and name not in await _children(sessions, service, parent)
    assert result.dropped["order"] == []  # order history stays with its orders
    last = monthly_partition_name("order_status_history", add_months(this_month, AHEAD))
    assert last in result.created["order"] or last in await _children(
        sessions, "order", "order_status_history"
    )
    # rows of the furthest month now have a home
    async with sessions["auth"]() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO security_audit_logs (id, created_at, event_type) "
                "VALUES (:id, :at, 'login_failed')"
            ),
            {
                "id": uuid.uuid4(),
                "at": datetime.combine(add_months(this_month, AHEAD), datetime.min.time(), UTC),
            },
        )

    again = await stack.client.execute_workflow(
        PartitionMaintenanceWorkflow.run,
        PartitionMaintenanceInput(months_ahead=AHEAD),
        id=f"{workflow_id}-again",
        task_queue=SAGAS_TASK_QUEUE,
        execution_timeout=timedelta(seconds=60),
    )
    assert again.created == {"auth": [], "order": [], "notification": []}
    await record_history(stack.client, workflow_id, "partition_maintenance", "months_ahead")


async def test_maintenance_sweeps_release_what_expired(
    stack: Stack, sessions: dict[str, SessionFactory]
) -> None:
    schedule = await stack.client.get_schedule_handle("maintenance").describe()
    assert isinstance(schedule.schedule.action, ScheduleActionStartWorkflow)
    assert schedule.schedule.action.workflow == "maintenance"
    assert [i.every for i in schedule.schedule.spec.intervals] == [
        timedelta(seconds=stack.settings.maintenance_interval_s)
    ]

    now = datetime.now(UTC)
    past = now - timedelta(hours=2)
    # inventory: an overdue reservation of 2 units and a live one of 1 unit
    variant = await stocked_variant(sessions, on_hand=5)
    overdue_order, live_order = uuid.uuid4(), uuid.uuid4()
    async with sessions["product"]() as s, s.begin():
        await product_service.reserve(
            s,
            overdue_order,
            [StockLine(variant_id=variant.variant_id, quantity=2)],
            timedelta(minutes=15),
            now=past,
        )
        await product_service.reserve(
            s, live_order, [StockLine(variant_id=variant.variant_id, quantity=1)], timedelta(minutes=15)
        )
    # coupons: the only slot of a coupon held by a checkout that never finished
    code = f"SWEEP{uuid.uuid4().hex[:8].upper()}"
    coupon_order = uuid.uuid4()
    async with sessions["discount"]() as s, s.begin():
        await discount_service.create_coupon(
            s, CouponIn(code=code, type="percentage", value=10, usage_limit_total=1)
        )
        await discount_service.reserve(
            s,
            code,
            uuid.uuid4(),
            coupon_order,
            5000,
            "USD",
            now - discount_service.RESERVATION_TTL - timedelta(minutes=1),
        )
    # carts: one past its expiry, one not
    async with sessions["cart"]() as s, s.begin():
        stale_cart = (await cart_service.get_or_create_user_cart(s, uuid.uuid4())).id
        fresh_cart = (await cart_service.get_or_create_user_cart(s, uuid.uuid4())).id
        await s.execute(
            text("UPDATE carts SET expires_at = :t WHERE id = :id"), {"t": past, "id": stale_cart}
        )

    workflow_id = f"maintenance-test-{uuid.uuid4()}"
    result = await stack.client.execute_workflow(
        MaintenanceWorkflow.run,
        MaintenanceInput(),
        id=workflow_id,
        task_queue=SAGAS_TASK_QUEUE,
        execution_timeout=timedelta(seconds=60),
    )
    # counts may include rows other tests left; the state below is what this test set up
    assert result.expired_reservations >= 0 and result.abandoned_carts >= 0

    async with sessions["product"]() as s:
        statuses: dict[uuid.UUID, str] = dict(
            (
                await s.execute(
                    text("SELECT order_id, status FROM inventory_reservations WHERE variant_id = :v"),
                    {"v": variant.variant_id},
                )
            ).all()
        )
        stock = (
            await s.execute(
                text("SELECT on_hand, reserved FROM inventory WHERE variant_id = :v"),
                {"v": variant.variant_id},
            )
        ).one()
    assert statuses == {overdue_order: "expired", live_order: "active"}
    assert tuple(stock) == (5, 1)  # the overdue 2 units are available again

    async with sessions["discount"]() as s:
        coupon = (
            await s.execute(
                text(
                    "SELECT c.times_used, u.status FROM coupons c JOIN coupon_usage u ON u.coupon_id = c.id "
                    "WHERE c.code = :code"
                ),
                {"code": code},
            )
        ).one()
    assert tuple(coupon) == (0, "released")

    async with sessions["cart"]() as s:
        carts: dict[uuid.UUID, str] = dict(
            (
                await s.execute(
                    text("SELECT id, status FROM carts WHERE id IN (:a, :b)"),
                    {"a": stale_cart, "b": fresh_cart},
                )
            ).all()
        )
    assert carts == {stale_cart: "abandoned", fresh_cart: "active"}

    # a second run has nothing of this test's left to do
    again = await stack.client.execute_workflow(
        MaintenanceWorkflow.run,
        MaintenanceInput(),
        id=f"{workflow_id}-again",
        task_queue=SAGAS_TASK_QUEUE,
        execution_timeout=timedelta(seconds=60),
    )
    assert again == MaintenanceResult(
        expired_reservations=0, released_coupon_reservations=0, abandoned_carts=0
    )
    await record_history(stack.client, workflow_id, "maintenance", "sweeps")
