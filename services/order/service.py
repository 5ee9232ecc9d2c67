"""Rules of the order service: creation with validated totals, the status state machine, returns,
views and lookups. Never commits: the caller owns the transaction."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidRequest
from services.order import repository as repo
from services.order.errors import (
    InvalidOrderTotals,
    InvalidOrderTransition,
    OrderAlreadyExists,
    OrderItemNotFound,
    OrderNotFound,
    ReturnQuantityExceeded,
)
from services.order.models import NoteVisibility, Order, OrderStatus
from services.order.schemas import (
    AddressView,
    CreatedOrder,
    HistoryEntry,
    NewOrder,
    NoteView,
    OrderItemView,
    OrderPage,
    OrderSummary,
    OrderView,
    PartitionsEnsured,
    ReturnedItem,
    ReturnLineIn,
    ReturnRecorded,
    StatusChange,
)

S = OrderStatus

# The state machine: the statuses each status may move to. Anything else is InvalidOrderTransition.
TRANSITIONS: Final[Mapping[OrderStatus, frozenset[OrderStatus]]] = {
    S.PENDING_PAYMENT: frozenset({S.CONFIRMED, S.FAILED, S.CANCELLED}),
    S.CONFIRMED: frozenset({S.SHIPPED, S.CANCELLED, S.REFUNDED}),
    S.SHIPPED: frozenset({S.DELIVERED, S.RETURNED}),
    S.DELIVERED: frozenset({S.PARTIALLY_RETURNED, S.RETURNED, S.REFUNDED}),
    S.PARTIALLY_RETURNED: frozenset({S.PARTIALLY_RETURNED, S.RETURNED, S.REFUNDED}),
    S.RETURNED: frozenset({S.REFUNDED}),
    S.CANCELLED: frozenset(),
    S.FAILED: frozenset(),
    S.REFUNDED: frozenset(),
}
# Status -> the timestamp column it sets.
STATUS_TIMESTAMPS: Final[Mapping[OrderStatus, str]] = {
    S.CONFIRMED: "confirmed_at",
    S.SHIPPED: "shipped_at",
    S.DELIVERED: "delivered_at",
    S.CANCELLED: "cancelled_at",
    S.FAILED: "failed_at",
}
MAX_PAGE = 100


def order_number(sequence_value: int, year: int) -> str:
    return f"SO-{year:04d}-{sequence_value:06d}"


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in TRANSITIONS[current]


# -- creation ----------------------------------------------------------------------------------------


def allocate_discount(discount: int, line_amounts: Sequence[int]) -> list[int]:
    """Split ``discount`` over the lines in proportion to their amounts (largest remainder method):
    integer shares that add up exactly to ``discount`` and never exceed a line's amount."""
    total = sum(line_amounts)
    if discount == 0 or total == 0:
        return [0] * len(line_amounts)
    shares = [discount * amount // total for amount in line_amounts]
    remainders = [discount * amount % total for amount in line_amounts]
    leftover = discount - sum(shares)
    for i in sorted(range(len(line_amounts)), key=lambda k: (-remainders[k], k))[:leftover]:
        shares[i] += 1
    return shares


def check_totals(new: NewOrder) -> list[int]:
    """Refuse amounts that do not add up; return the line amounts."""
    line_amounts = [line.unit_price_amount * line.quantity for line in new.lines]
    problems: dict[str, Any] = {}
    if sum(line_amounts) != new.subtotal_amount:
        problems["subtotal_amount"] = f"{new.subtotal_amount} != sum of lines {sum(line_amounts)}"
    if new.discount_amount > new.subtotal_amount:
        problems["discount_amount"] = f"{new.discount_amount} exceeds the subtotal {new.subtotal_amount}"
    expected = new.subtotal_amount - new.discount_amount + new.shipping_amount + new.tax_amount
    if new.total_amount != expected:
        problems["total_amount"] = f"{new.total_amount} != subtotal - discount + shipping + tax = {expected}"
    if problems:
        raise InvalidOrderTotals("the order's amounts do not add up", problems=problems)
    return line_amounts


async def create_order(session: AsyncSession, new: NewOrder, *, actor: str = "system") -> CreatedOrder:
    """A new order in ``pending_payment`` with its items, address snapshot and first history row."""
    line_amounts = check_totals(new)
    if await repo.order_exists(session, new.order_id):
        raise OrderAlreadyExists(f"order {new.order_id} exists already", order_id=str(new.order_id))
    seq, now = await repo.next_order_number(session)
    number = order_number(seq, now.year)
    await repo.insert_order(
        session,
        {
            "id": new.order_id,
            "user_id": new.user_id,
            "order_number": number,
            "cart_id": new.cart_id,
            "coupon_code": new.coupon_code,
            "status": S.PENDING_PAYMENT.value,
            "currency": new.currency,
            "subtotal_amount": new.subtotal_amount,
            "discount_amount": new.discount_amount,
            "shipping_amount": new.shipping_amount,
            "tax_amount": new.tax_amount,
            "total_amount": new.total_amount,
            "workflow_id": new.workflow_id,
            "placed_at": now,
        },
    )
    discounts = allocate_discount(new.discount_amount, line_amounts)
    await repo.insert_items(
        session,
        [
            {
                "id": uuid.uuid4(),
                "order_id": new.order_id,
                "order_user_id": new.user_id,
                "line_no": n,
                "product_id": line.product_id,
                "variant_id": line.variant_id,
                "sku": line.sku,
                "name": line.name,
                "unit_price_amount": line.unit_price_amount,
                "quantity": line.quantity,
                "line_amount": amount,
                "discount_amount": share,
            }
            for n, (line, amount, share) in enumerate(zip(new.lines, line_amounts, discounts, strict=True), 1)
        ],
    )
    await repo.insert_address(
        session,
        {"id": uuid.uuid4(), "order_id": new.order_id, "user_id": new.user_id}
        | new.shipping_address.model_dump(),
    )
    await repo.insert_history(
        session,
        order_id=new.order_id,
        user_id=new.user_id,
        from_status=None,
        to_status=S.PENDING_PAYMENT.value,
        reason="order placed",
        actor=actor,
    )
    return CreatedOrder(order_id=new.order_id, order_number=number, status=S.PENDING_PAYMENT)


# -- status changes ----------------------------------------------------------------------------------


async def _locked(session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID | None) -> Order:
    order = await repo.get_order(session, order_id, user_id, for_update=True)
    if order is None:
        raise OrderNotFound(f"no order {order_id}", order_id=str(order_id))
    return order


async def _move(
    session: AsyncSession,
    order: Order,
    target: OrderStatus,
    *,
    reason: str | None,
    actor: str,
    values: Mapping[str, Any] | None = None,
) -> StatusChange:
    """Apply one transition of a locked order: row update (version + 1) and history row together."""
    current = OrderStatus(order.status)
    if not can_transition(current, target):
        raise InvalidOrderTransition(
            f"order {order.id} is {current}; it cannot become {target}",
            order_id=str(order.id),
            status=current.value,
            requested=target.value,
        )
    update: dict[str, Any] = {"status": target.value, **(values or {})}
    if target in STATUS_TIMESTAMPS:
        update[STATUS_TIMESTAMPS[target]] = func.now()
    version = await repo.update_order(session, order, update)
    if version is None:  # cannot happen under the row lock; refuse loudly rather than lose a change
        raise RuntimeError(f"order {order.id} changed under its row lock")
    await repo.insert_history(
        session,
        order_id=order.id,
        user_id=order.user_id,
        from_status=current.value,
        to_status=target.value,
        reason=reason,
        actor=actor,
    )
    return StatusChange(
        order_id=order.id, status=target, previous_status=current, changed=True, version=version
    )


def _unchanged(order: Order) -> StatusChange:
    status = OrderStatus(order.status)
    return StatusChange(
        order_id=order.id, status=status, previous_status=status, changed=False, version=order.version
    )


async def set_status(
    session: AsyncSession,
    order_id: uuid.UUID,
    user_id: uuid.UUID | None,
    target: OrderStatus,
    *,
    reason: str | None = None,
    actor: str = "system",
    values: Mapping[str, Any] | None = None,
) -> StatusChange:
    """Move the order to ``target``; already there (and no self-transition allowed) is a no-op."""
    order = await _locked(session, order_id, user_id)
    if order.status == target and not can_transition(target, target):
        return _unchanged(order)
    return await _move(session, order, target, reason=reason, actor=actor, values=values)


async def confirm(
    session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID, payment_id: uuid.UUID, *, actor: str
) -> StatusChange:
    """Payment authorized: pending_payment -> confirmed, remembering the payment."""
    return await set_status(
        session,
        order_id,
        user_id,
        S.CONFIRMED,
        reason="payment authorized",
        actor=actor,
        values={"payment_id": payment_id},
    )


async def fail(
    session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID, reason: str, *, actor: str
) -> StatusChange:
    """Checkout compensation: pending_payment -> failed with the reason. An order that was never created
    (the create step timed out before it happened) is nothing to undo: ``found`` false, no error."""
    order = await repo.get_order(session, order_id, user_id, for_update=True)
    if order is None:
        return StatusChange(
            order_id=order_id, found=False, status=None, previous_status=None, changed=False, version=None
        )
    if order.status == S.FAILED:
        return _unchanged(order)
    return await _move(
        session, order, S.FAILED, reason=reason, actor=actor, values={"failure_reason": reason}
    )


async def cancel(
    session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID, reason: str, *, actor: str
) -> StatusChange:
    """Shopper (or support) cancel, allowed before shipping."""
    return await set_status(
        session, order_id, user_id, S.CANCELLED, reason=reason, actor=actor, values={"failure_reason": reason}
    )


async def record_return(
    session: AsyncSession,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    lines: Sequence[ReturnLineIn],
    *,
    reason: str | None,
    actor: str,
) -> ReturnRecorded:
    """Count returned units per item (never more than bought) and move the order to
    ``returned`` (everything back) or ``partially_returned``."""
    order = await _locked(session, order_id, user_id)
    items = {item.id: item for item in await repo.get_items_for_update(session, order_id, user_id)}
    wanted: dict[uuid.UUID, int] = {}
    for line in lines:
        wanted[line.order_item_id] = wanted.get(line.order_item_id, 0) + line.quantity
    for item_id, quantity in wanted.items():
        item = items.get(item_id)
        if item is None:
            raise OrderItemNotFound(f"order {order_id} has no item {item_id}", order_item_id=str(item_id))
        if quantity > item.quantity - item.returned_quantity:
            raise ReturnQuantityExceeded(
                f"item {item_id}: {quantity} returned but only {item.quantity - item.returned_quantity} returnable",
                order_item_id=str(item_id),
                returnable_quantity=item.quantity - item.returned_quantity,
            )
    for item_id, quantity in wanted.items():
        if await repo.add_returned_quantity(session, item_id, quantity) is None:
            raise ReturnQuantityExceeded(f"item {item_id}: not returnable", order_item_id=str(item_id))
    fresh = await repo.get_items(session, order_id, user_id)
    everything_back = all(i.returned_quantity == i.quantity for i in fresh)
    target = S.RETURNED if everything_back else S.PARTIALLY_RETURNED
    change = await _move(session, order, target, reason=reason or "items returned", actor=actor)
    assert change.status is not None
    return ReturnRecorded(
        order_id=order_id,
        status=change.status,
        items=[
            ReturnedItem(
                order_item_id=i.id,
                returned_quantity=i.returned_quantity,
                returnable_quantity=i.quantity - i.returned_quantity,
            )
            for i in fresh
            if i.id in wanted
        ],
    )


# -- reads -------------------------------------------------------------------------------------------


async def get_order(
    session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> OrderView:
    """The full order: header, items with returnable quantities, address snapshot, history.
    With ``user_id`` another user's order is simply not found."""
    order = await repo.get_order(session, order_id, user_id)
    if order is None:
        raise OrderNotFound(f"no order {order_id}", order_id=str(order_id))
    return await _view(session, order)


async def get_order_by_number(session: AsyncSession, number: str) -> OrderView:
    order = await repo.get_order_by_number(session, number.strip().upper())
    if order is None:
        raise OrderNotFound(f"no order {number}", order_number=number)
    return await _view(session, order)


async def _view(session: AsyncSession, order: Order) -> OrderView:
    items = await repo.get_items(session, order.id, order.user_id)
    address = await repo.get_address(session, order.id, order.user_id)
    history = await repo.get_history(session, order.id)
    return OrderView(
        **_summary(order).model_dump(),
        cart_id=order.cart_id,
        coupon_code=order.coupon_code,
        failure_reason=order.failure_reason,
        subtotal_amount=order.subtotal_amount,
        discount_amount=order.discount_amount,
        shipping_amount=order.shipping_amount,
        tax_amount=order.tax_amount,
        payment_id=order.payment_id,
        shipment_id=order.shipment_id,
        workflow_id=order.workflow_id,
        version=order.version,
        confirmed_at=order.confirmed_at,
        shipped_at=order.shipped_at,
        delivered_at=order.delivered_at,
        cancelled_at=order.cancelled_at,
        failed_at=order.failed_at,
        items=[
            OrderItemView(
                id=i.id,
                line_no=i.line_no,
                product_id=i.product_id,
                variant_id=i.variant_id,
                sku=i.sku,
                name=i.name,
                unit_price_amount=i.unit_price_amount,
                quantity=i.quantity,
                line_amount=i.line_amount,
                discount_amount=i.discount_amount,
                returned_quantity=i.returned_quantity,
                returnable_quantity=i.quantity - i.returned_quantity,
            )
            for i in items
        ],
        shipping_address=None
        if address is None
        else AddressView.model_validate(address, from_attributes=True),
        history=[
            HistoryEntry(
                from_status=OrderStatus(h.from_status) if h.from_status else None,
                to_status=OrderStatus(h.to_status),
                reason=h.reason,
                actor=h.actor,
                created_at=h.created_at,
            )
            for h in history
        ],
    )


def _summary(order: Order) -> OrderSummary:
    return OrderSummary(
        id=order.id,
        order_number=order.order_number,
        user_id=order.user_id,
        status=OrderStatus(order.status),
        currency=order.currency,
        total_amount=order.total_amount,
        placed_at=order.placed_at,
    )


def encode_cursor(placed_at: datetime, order_id: uuid.UUID) -> str:
    raw = json.dumps({"p": placed_at.isoformat(), "i": str(order_id)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(data["p"]), uuid.UUID(data["i"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidRequest("invalid cursor", cursor=cursor) from exc


async def list_orders(
    session: AsyncSession,
    *,
    user_id: uuid.UUID | None,
    statuses: Sequence[OrderStatus] | None = None,
    cursor: str | None = None,
    limit: int = 20,
) -> OrderPage:
    """Orders newest first, ``limit`` per page; ``next_cursor`` fetches the next page. With
    ``user_id`` a shopper's orders; without, support's list (``statuses`` required then)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be 1..{MAX_PAGE}", limit=limit)
    if user_id is None and not statuses:
        raise InvalidRequest("listing without a user needs a status filter")
    rows = await repo.list_orders(
        session,
        user_id=user_id,
        statuses=[s.value for s in statuses] if statuses else None,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page = [_summary(o) for o in rows[:limit]]
    more = len(rows) > limit
    return OrderPage(
        orders=page, next_cursor=encode_cursor(page[-1].placed_at, page[-1].id) if more and page else None
    )


# -- notes -------------------------------------------------------------------------------------------


async def add_note(
    session: AsyncSession,
    order_id: uuid.UUID,
    *,
    body: str,
    visibility: NoteVisibility,
    author_id: uuid.UUID | None,
) -> NoteView:
    body = body.strip()
    if not body or len(body) > 10_000:
        raise InvalidRequest("a note needs 1..10000 characters")
    order = await repo.get_order(session, order_id)
    if order is None:
        raise OrderNotFound(f"no order {order_id}", order_id=str(order_id))
    note = await repo.insert_note(
        session,
        {
            "id": uuid.uuid4(),
            "order_id": order.id,
            "order_user_id": order.user_id,
            "author_id": author_id,
            "visibility": visibility.value,
            "body": body,
        },
    )
    return NoteView.model_validate(note, from_attributes=True)


async def list_notes(session: AsyncSession, order_id: uuid.UUID, *, include_internal: bool) -> list[NoteView]:
    visibilities = [v.value for v in NoteVisibility] if include_internal else [NoteVisibility.CUSTOMER.value]
    notes = await repo.get_notes(session, order_id, visibilities)
    return [NoteView.model_validate(n, from_attributes=True) for n in notes]


# -- partitions --------------------------------------------------------------------------------------


async def ensure_history_partitions(
    session: AsyncSession, today: date, months_ahead: int
) -> PartitionsEnsured:
    if not 0 <= months_ahead <= 24:
        raise InvalidRequest("months_ahead must be 0..24", months_ahead=months_ahead)
    created = await repo.create_history_partitions(session, today, months_ahead)
    existing = await repo.existing_partitions(session, repo.HISTORY_TABLE)
    return PartitionsEnsured(created=created, existing=sorted(existing))
