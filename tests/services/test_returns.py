"""Return service on the real return_db: eligibility, quantity accounting, refund math, state machine."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Select, func, select
from sqlmodel import col
from temporalio.exceptions import ApplicationError

from activities.returns import (
    AuthorizeInput,
    CreateReturnInput,
    CreateReturnResult,
    DecideInput,
    GetReturnInput,
    InspectionInput,
    ParcelReceivedInput,
    RecordRefundInput,
    RecordReturnTrackingInput,
    ReturnActivities,
    SetStatusInput,
)
from core.db import SessionFactory
from services.returns import service
from services.returns.models import ReturnItem, ReturnRequest, ReturnStatusHistory, ledger
from services.returns.service import discount_share

DELIVERED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(sessions: dict[str, SessionFactory]) -> SessionFactory:
    return sessions["return"]


@pytest.fixture
def acts(db: SessionFactory) -> ReturnActivities:
    return ReturnActivities(db)


def key() -> str:
    return f"wf-{uuid.uuid4().hex}:step"


def make_order(
    *lines: tuple[int, int, int], shipping: int = 700, delivered: datetime | None = DELIVERED
) -> dict[str, Any]:
    """An order snapshot shaped like ``order.get``'s result; lines are (quantity, unit price, discount)."""
    return {
        "id": str(uuid.uuid4()),
        "user_id": str(uuid.uuid4()),
        "order_number": "SO-1",
        "status": "delivered" if delivered else "shipped",
        "currency": "USD",
        "delivered_at": delivered.isoformat() if delivered else None,
        "shipping_amount": shipping,
        "payment_id": str(uuid.uuid4()),
        "items": [
            {
                "id": str(uuid.uuid4()),
                "variant_id": str(uuid.uuid4()),
                "quantity": q,
                "unit_price_amount": p,
                "discount_amount": d,
            }
            for q, p, d in lines
        ],
    }


def request(
    order: dict[str, Any],
    lines: list[tuple[int, int, str]],
    *,
    at: datetime = DELIVERED + timedelta(days=3),
    auto_under: int | None = None,
    window_days: int = 30,
) -> CreateReturnInput:
    """lines: (index of the order line, quantity, reason)."""
    return CreateReturnInput.model_validate(
        {
            "idempotency_key": key(),
            "return_id": uuid.uuid4(),
            "order": order,
            "items": [
                {"order_item_id": order["items"][i]["id"], "quantity": q, "reason": reason}
                for i, q, reason in lines
            ],
            "user_id": order["user_id"],
            "window_days": window_days,
            "auto_approve_under_amount": auto_under,
            "requested_at": at,
        }
    )


async def count(db: SessionFactory, stmt: Select[int]) -> int:
    async with db() as s:
        return int((await s.execute(stmt)).scalar_one())


async def returns_of(db: SessionFactory, order: dict[str, Any]) -> int:
    return await count(
        db,
        select(func.count())
        .select_from(ReturnRequest)
        .where(col(ReturnRequest.order_id) == uuid.UUID(order["id"])),
    )


async def refused(call: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as err:
        await call
    assert err.value.non_retryable
    return err.value


async def through_receipt(acts: ReturnActivities, created: CreateReturnResult) -> None:
    if created.status == "requested":
        await acts.decide(
            DecideInput(idempotency_key=key(), return_id=created.return_id, approve=True, actor="support:1")
        )
    await acts.authorize(
        AuthorizeInput(
            idempotency_key=key(),
            return_id=created.return_id,
            tracking_number=f"SB{uuid.uuid4().hex[:14]}",
            label_url="https://carrier.test/label",
            expires_at=DELIVERED + timedelta(days=40),
        )
    )
    await acts.record_parcel_received(ParcelReceivedInput(idempotency_key=key(), return_id=created.return_id))


# --------------------------------------------------------------------------------------------
# Eligibility


async def test_eligibility_refusals_write_nothing(acts: ReturnActivities, db: SessionFactory) -> None:
    undelivered = make_order((1, 1000, 0), delivered=None)
    inp = request(undelivered, [(0, 1, "defective")])
    assert (await refused(acts.create_request(inp))).type == "OrderNotDelivered"

    order = make_order((2, 1000, 0))
    on_last_day = request(order, [(0, 1, "defective")], at=DELIVERED + timedelta(days=30))
    late = request(order, [(0, 1, "defective")], at=DELIVERED + timedelta(days=30, seconds=1))
    assert (await refused(acts.create_request(late))).type == "ReturnWindowClosed"
    assert (
        await refused(acts.create_request(request(order, [(0, 3, "defective")])))
    ).type == "QuantityNotReturnable"
    stranger = request(order, [(0, 1, "defective")])
    stranger.items[0].order_item_id = uuid.uuid4()
    assert (await refused(acts.create_request(stranger))).type == "OrderItemNotInOrder"
    assert await returns_of(db, order) == 0
    async with db() as s:
        assert (
            await s.execute(select(ledger.c.key).where(ledger.c.key == late.idempotency_key))
        ).first() is None

    assert (
        await acts.create_request(on_last_day)
    ).status == "requested"  # the window includes its last moment
    with pytest.raises(ValidationError):  # bad input is refused before anything runs
        request(order, [(0, 0, "defective")])
    with pytest.raises(ValidationError):
        request(order, [(0, 1, "defective"), (0, 1, "other")])  # one line twice


async def test_quantity_accounting_across_requests(acts: ReturnActivities, db: SessionFactory) -> None:
    order = make_order((3, 1000, 0), (1, 500, 0))
    first = await acts.create_request(request(order, [(0, 2, "changed_mind")]))
    err = await refused(acts.create_request(request(order, [(0, 2, "changed_mind")])))
    assert err.type == "QuantityNotReturnable" and err.details[0]["returnable"] == 1
    second = await acts.create_request(request(order, [(0, 1, "changed_mind"), (1, 1, "other")]))
    assert (
        await refused(acts.create_request(request(order, [(0, 1, "other")])))
    ).type == "QuantityNotReturnable"

    # A rejected return frees its units again.
    await acts.decide(
        DecideInput(idempotency_key=key(), return_id=first.return_id, approve=False, actor="support:7")
    )
    again = await acts.create_request(request(order, [(0, 2, "defective")]))
    assert again.status == "requested" and second.status == "requested"
    assert await returns_of(db, order) == 3


async def test_concurrent_requests_never_over_return(acts: ReturnActivities, db: SessionFactory) -> None:
    order = make_order((3, 1000, 0))
    attempts = [request(order, [(0, 1, "other")]) for _ in range(6)]
    results = await asyncio.gather(*(acts.create_request(a) for a in attempts), return_exceptions=True)
    ok = [r for r in results if isinstance(r, CreateReturnResult)]
    failures = [r for r in results if isinstance(r, ApplicationError)]
    assert len(ok) == 3 and len(failures) == 3
    assert all(f.type == "QuantityNotReturnable" for f in failures)
    async with db() as s:
        held = (
            await s.execute(
                select(func.sum(col(ReturnItem.quantity_requested)))
                .join(ReturnRequest, col(ReturnRequest.id) == col(ReturnItem.return_request_id))
                .where(col(ReturnRequest.order_id) == uuid.UUID(order["id"]))
            )
        ).scalar_one()
    assert held == 3


# --------------------------------------------------------------------------------------------
# Refund math


def test_discount_shares_add_up_exactly() -> None:
    # 100 of discount over 3 units, returned one by one: 33 + 33 + 34 = 100.
    assert [discount_share(100, 3, before, 1) for before in range(3)] == [33, 33, 34]
    assert discount_share(100, 3, 0, 3) == 100 and discount_share(0, 5, 2, 2) == 0


async def test_refund_with_discount_share_shipping_and_restock(
    acts: ReturnActivities, db: SessionFactory
) -> None:
    # line 0: 3 x 1000 with 100 discount; line 1: 1 x 2500 with 250 discount; shipping 700.
    order = make_order((3, 1000, 100), (1, 2500, 250), shipping=700)
    first = await acts.create_request(request(order, [(0, 1, "defective")]))
    assert first.requested_amount == 1000 - 33
    await through_receipt(acts, first)
    one = await acts.record_inspection(
        InspectionInput(
            idempotency_key=key(),
            return_id=first.return_id,
            items=[{"order_item_id": order["items"][0]["id"], "quantity_accepted": 1, "condition": "opened"}],
        )
    )
    assert (one.refund_amount, one.breakdown.shipping_amount) == (967, 0)  # not everything is back yet
    assert [(r.variant_id, r.quantity) for r in one.restock_lines] == [
        (uuid.UUID(order["items"][0]["variant_id"]), 1)
    ]
    assert str(one.payment_id) == order["payment_id"]

    # The rest comes back, all defective: the discount share completes to 100 and shipping is refunded.
    second = await acts.create_request(request(order, [(0, 2, "defective"), (1, 1, "wrong_item")]))
    await through_receipt(acts, second)
    rest = await acts.record_inspection(
        InspectionInput.model_validate(
            {
                "idempotency_key": key(),
                "return_id": second.return_id,
                "items": [
                    {"order_item_id": order["items"][0]["id"], "quantity_accepted": 2, "condition": "new"},
                    {
                        "order_item_id": order["items"][1]["id"],
                        "quantity_accepted": 1,
                        "condition": "damaged",
                    },
                ],
            }
        )
    )
    b = rest.breakdown
    assert (b.items_amount, b.discount_share_amount, b.shipping_amount) == (4500, 67 + 250, 700)
    assert rest.refund_amount == 4500 - 317 + 700 == b.total_amount
    # Everything refunded over both returns: the order's lines minus all their discounts, plus shipping.
    assert one.refund_amount + rest.refund_amount == (3000 - 100) + (2500 - 250) + 700
    assert [(r.variant_id, r.quantity) for r in rest.restock_lines] == [
        (uuid.UUID(order["items"][0]["variant_id"]), 2)
    ]
    async with db() as s:
        rows = (
            await s.scalars(select(ReturnItem).where(col(ReturnItem.return_request_id) == second.return_id))
        ).all()
        assert sorted(
            (r.quantity_accepted, r.condition, r.discount_share_amount, r.refund_amount) for r in rows
        ) == [
            (1, "damaged", 250, 2250),
            (2, "new", 67, 1933),
        ]
        req = await s.get(ReturnRequest, second.return_id)
        assert req is not None and req.refund_amount == rest.refund_amount and req.status == "inspected"
        assert req.refund_breakdown is not None and req.refund_breakdown["shipping_amount"] == 700


async def test_no_shipping_refund_for_a_change_of_mind(acts: ReturnActivities) -> None:
    order = make_order((1, 1000, 0), shipping=700)
    created = await acts.create_request(request(order, [(0, 1, "changed_mind")]))
    await through_receipt(acts, created)
    result = await acts.record_inspection(
        InspectionInput.model_validate(
            {
                "idempotency_key": key(),
                "return_id": created.return_id,
                "items": [
                    {"order_item_id": order["items"][0]["id"], "quantity_accepted": 1, "condition": "new"}
                ],
            }
        )
    )
    assert (result.refund_amount, result.breakdown.shipping_amount) == (1000, 0)


# --------------------------------------------------------------------------------------------
# State machine


async def test_lifecycle_history_and_refusals(acts: ReturnActivities, db: SessionFactory) -> None:
    order = make_order((2, 1500, 0))
    inp = request(order, [(0, 2, "defective")], auto_under=1000)  # 3000 is not under 1000
    created = await acts.create_request(inp)
    assert (created.status, created.auto_approved, created.rma_number) == (
        "requested",
        False,
        f"RMA-{created.return_id.hex[:12].upper()}",
    )
    assert await acts.create_request(inp) == created  # same key: first result
    reused = await refused(acts.create_request(inp.model_copy(update={"window_days": 10})))
    assert reused.type == "IdempotencyKeyReused"
    assert await returns_of(db, order) == 1

    # Inspection before the parcel arrives is refused.
    early = InspectionInput.model_validate(
        {
            "idempotency_key": key(),
            "return_id": created.return_id,
            "items": [{"order_item_id": order["items"][0]["id"], "quantity_accepted": 2, "condition": "new"}],
        }
    )
    assert (await refused(acts.record_inspection(early))).type == "InvalidReturnTransition"
    decision = await acts.decide(
        DecideInput(
            idempotency_key=key(), return_id=created.return_id, approve=True, actor="support:42", note="ok"
        )
    )
    assert (decision.previous_status, decision.status, decision.changed) == ("requested", "approved", True)
    flip = DecideInput(idempotency_key=key(), return_id=created.return_id, approve=False, actor="support:43")
    assert (await refused(acts.decide(flip))).type == "InvalidReturnTransition"
    await through_receipt(acts, CreateReturnResult(**{**created.model_dump(), "status": "approved"}))
    over = InspectionInput.model_validate(
        {
            "idempotency_key": key(),
            "return_id": created.return_id,
            "items": [{"order_item_id": order["items"][0]["id"], "quantity_accepted": 3, "condition": "new"}],
        }
    )
    assert (await refused(acts.record_inspection(over))).type == "InvalidInspection"
    inspected = await acts.record_inspection(early.model_copy(update={"idempotency_key": key()}))
    assert inspected.refund_amount == 3000 + 700  # everything back, defective: shipping too

    payment_id = uuid.UUID(order["payment_id"])
    too_much = RecordRefundInput(
        idempotency_key=key(),
        return_id=created.return_id,
        payment_id=payment_id,
        amount=3701,
        status="succeeded",
    )
    assert (await refused(acts.record_refund(too_much))).type == "RefundExceedsApproved"
    pending = await acts.record_refund(
        RecordRefundInput(
            idempotency_key=key(),
            return_id=created.return_id,
            payment_id=payment_id,
            amount=3700,
            provider_refund_id=f"re_{uuid.uuid4().hex}",
            status="pending",
        )
    )
    assert (pending.refund_status, pending.return_status) == ("pending", "inspected")
    done = await acts.record_refund(
        RecordRefundInput(
            idempotency_key=key(),
            return_id=created.return_id,
            payment_id=payment_id,
            amount=3700,
            provider_refund_id=(await acts.get(GetReturnInput(return_id=created.return_id)))
            .refunds[0]
            .provider_refund_id,
            status="succeeded",
        )
    )
    assert (done.refund_id, done.refund_status, done.return_status, done.refunded_total) == (
        pending.refund_id,
        "succeeded",
        "refunded",
        3700,
    )
    closed = await acts.set_status(
        SetStatusInput(idempotency_key=key(), return_id=created.return_id, status="closed", actor="system")
    )
    assert closed.status == "closed"
    with pytest.raises(ValidationError):
        SetStatusInput(idempotency_key=key(), return_id=created.return_id, status="inspected")
    cancel = SetStatusInput(idempotency_key=key(), return_id=created.return_id, status="cancelled")
    assert (await refused(acts.set_status(cancel))).type == "InvalidReturnTransition"

    view = await acts.get(GetReturnInput(return_id=created.return_id))
    assert [(h.from_status, h.to_status) for h in view.history] == [
        (None, "requested"),
        ("requested", "approved"),
        ("approved", "awaiting_parcel"),
        ("awaiting_parcel", "received"),
        ("received", "inspected"),
        ("inspected", "refunded"),
        ("refunded", "closed"),
    ]
    assert (
        view.history[1].actor == "support:42"
        and view.decided_by == "support:42"
        and view.decision_note == "ok"
    )
    assert view.authorization is not None and view.authorization.status == "used"
    assert view.authorization.rma_code == view.rma_number and view.status == "closed" and view.version == 7
    async with db() as s:
        assert (
            await s.scalar(
                select(func.count())
                .select_from(ReturnStatusHistory)
                .where(col(ReturnStatusHistory.return_request_id) == created.return_id)
            )
            == 7
        )
        assert (
            await service.get(s, created.return_id, user_id=uuid.UUID(order["user_id"]))
        ).id == created.return_id
        with pytest.raises(service.ReturnNotFound):  # another user's return
            await service.get(s, created.return_id, user_id=uuid.uuid4())


async def test_auto_approval_under_the_threshold(acts: ReturnActivities) -> None:
    order = make_order((1, 999, 0), (1, 1000, 0))
    small = await acts.create_request(request(order, [(0, 1, "other")], auto_under=1000))
    assert (small.status, small.auto_approved, small.requested_amount) == ("approved", True, 999)
    equal = await acts.create_request(request(order, [(1, 1, "other")], auto_under=1000))
    assert (equal.status, equal.auto_approved) == ("requested", False)  # strictly under
    view = await acts.get(GetReturnInput(return_id=small.return_id))
    assert view.decided_by == "system:auto-approval" and view.history[-1].actor == "system:auto-approval"


async def test_expiry_cancels_the_rma_and_frees_the_units(acts: ReturnActivities) -> None:
    order = make_order((1, 1000, 0))
    created = await acts.create_request(request(order, [(0, 1, "other")], auto_under=10_000))
    tracking = f"SB{uuid.uuid4().hex[:14]}"
    await acts.authorize(
        AuthorizeInput(
            idempotency_key=key(),
            return_id=created.return_id,
            tracking_number=tracking,
            label_url=None,
            expires_at=DELIVERED + timedelta(days=40),
        )
    )
    event = RecordReturnTrackingInput(
        carrier_event_id=f"evt_{uuid.uuid4().hex}",
        tracking_number=tracking,
        status="picked_up",
        occurred_at=DELIVERED,
    )
    first = await acts.record_tracking_event(event)
    assert (first.return_id, first.duplicate) == (created.return_id, False)
    assert (await acts.record_tracking_event(event)).duplicate

    await acts.set_status(
        SetStatusInput(idempotency_key=key(), return_id=created.return_id, status="expired")
    )
    view = await acts.get(GetReturnInput(return_id=created.return_id))
    assert (
        view.status == "expired" and view.authorization is not None and view.authorization.status == "expired"
    )
    assert (await acts.create_request(request(order, [(0, 1, "other")]))).status == "requested"
