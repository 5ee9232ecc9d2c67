"""Rules of the return service. Never commits; the caller passes the order snapshot (no cross-service reads).

Eligibility (``create_request``)
  * the order must be delivered (``delivered_at`` set), else ``OrderNotDelivered``;
  * ``now <= delivered_at + window_days``, else ``ReturnWindowClosed``;
  * per order line, ``requested <= bought - held by the order's other live returns`` (a return holds
    its requested units, or its accepted units once inspected; rejected, cancelled and expired
    returns hold none), else ``QuantityNotReturnable``. Requests of one order are serialized with a
    transaction-scoped advisory lock, so two concurrent requests cannot both take the last unit.
  * auto approval: ``requested_amount < auto_approve_under_amount`` approves at once.

Refund amount (``record_inspection``), integer minor units, no floats
  * a line's allocated discount ``D`` over its ``Q`` bought units is shared out cumulatively: after
    ``k`` units of the line have been accepted in all returns, ``floor(D * k / Q)`` of the discount is
    taken back. A return accepting ``a`` units while ``p`` were accepted before takes back
    ``floor(D * (p + a) / Q) - floor(D * p / Q)``; so the shares of all returns of a line add up to
    exactly ``D`` when every unit comes back, and no rounding cent is ever lost or doubled.
  * line refund = ``unit_price * a - share``; the refund is the sum of the lines
  * shipping is refunded only when, with this return, every unit of the order has been accepted back
    and every line of this return has a seller-fault reason (defective, damaged, wrong_item,
    not_as_described). Tax is not part of the snapshot and not refunded here.
  * ``requested_amount`` is the same computation on the requested quantities (an estimate).
  * restock: accepted units in condition new or opened, per variant; damaged units are not restocked.

State machine (every change writes a ``return_status_history`` row)::

    requested -> approved | rejected | cancelled | expired
    approved -> awaiting_parcel | cancelled | expired
    awaiting_parcel -> received | cancelled | expired
    received -> inspected
    inspected -> refunded | closed
    refunded -> closed
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from services.returns import repository as repo
from services.returns.errors import (
    InvalidInspection,
    InvalidReturnTransition,
    OrderItemNotInOrder,
    OrderNotDelivered,
    QuantityNotReturnable,
    RefundExceedsApproved,
    RefundMismatch,
    ReturnAlreadyExists,
    ReturnNotFound,
    ReturnWindowClosed,
)
from services.returns.models import (
    AuthorizationStatus,
    ItemCondition,
    Refund,
    RefundStatus,
    ReturnAuthorization,
    ReturnItem,
    ReturnReason,
    ReturnRequest,
    ReturnStatus,
)
from services.returns.schemas import (
    AuthorizationView,
    HistoryView,
    InspectionLineIn,
    ItemView,
    OrderItemSnapshot,
    OrderSnapshot,
    RefundBreakdown,
    RefundLine,
    RefundView,
    RestockLine,
    ReturnLineIn,
    ReturnView,
)

St = ReturnStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    St.REQUESTED: frozenset({St.APPROVED, St.REJECTED, St.CANCELLED, St.EXPIRED}),
    St.APPROVED: frozenset({St.AWAITING_PARCEL, St.CANCELLED, St.EXPIRED}),
    St.AWAITING_PARCEL: frozenset({St.RECEIVED, St.CANCELLED, St.EXPIRED}),
    St.RECEIVED: frozenset({St.INSPECTED}),
    St.INSPECTED: frozenset({St.REFUNDED, St.CLOSED}),
    St.REFUNDED: frozenset({St.CLOSED}),
}
# Statuses ``set_status`` may move to; the others have their own operation (and data).
SETTABLE = frozenset({St.CLOSED, St.EXPIRED, St.CANCELLED})
SELLER_FAULT = frozenset(
    {ReturnReason.DEFECTIVE, ReturnReason.DAMAGED, ReturnReason.WRONG_ITEM, ReturnReason.NOT_AS_DESCRIBED}
)
RESTOCKABLE = frozenset({ItemCondition.NEW, ItemCondition.OPENED})
AUTO_APPROVER = "system:auto-approval"


def rma_number_for(return_id: uuid.UUID) -> str:
    """Deterministic from the return id, so a retried request gets the same RMA number."""
    return f"RMA-{return_id.hex[:12].upper()}"


def discount_share(line_discount: int, bought: int, before: int, now: int) -> int:
    """The part of a line's discount taken back for ``now`` units after ``before`` were (see module doc)."""
    return line_discount * (before + now) // bought - line_discount * before // bought


def refund_line(item: OrderItemSnapshot, quantity: int, before: int) -> RefundLine:
    gross = item.unit_price_amount * quantity
    share = discount_share(item.discount_amount, item.quantity, before, quantity)
    return RefundLine(
        order_item_id=item.order_item_id,
        variant_id=item.variant_id,
        quantity=quantity,
        unit_price_amount=item.unit_price_amount,
        gross_amount=gross,
        discount_share_amount=share,
        refund_amount=gross - share,
    )


def breakdown(lines: Sequence[RefundLine], shipping_amount: int, currency: str) -> RefundBreakdown:
    items_amount = sum(line.gross_amount for line in lines)
    share = sum(line.discount_share_amount for line in lines)
    return RefundBreakdown(
        items=list(lines),
        items_amount=items_amount,
        discount_share_amount=share,
        shipping_amount=shipping_amount,
        total_amount=items_amount - share + shipping_amount,
        currency=currency,
    )


class CreatedReturn(BaseModel):
    return_id: uuid.UUID
    rma_number: str
    status: str
    auto_approved: bool
    requested_amount: int
    currency: str


class StatusChange(BaseModel):
    return_id: uuid.UUID
    status: str
    previous_status: str
    changed: bool


class InspectionOutcome(BaseModel):
    return_id: uuid.UUID
    refund_amount: int
    currency: str
    restock_lines: list[RestockLine]
    payment_id: uuid.UUID | None
    breakdown: RefundBreakdown


class RefundRecorded(BaseModel):
    return_id: uuid.UUID
    refund_id: uuid.UUID
    refund_status: str
    return_status: str
    refunded_total: int


class TrackingRecorded(BaseModel):
    return_id: uuid.UUID
    duplicate: bool
    delivered: bool


# --------------------------------------------------------------------------------------------
# Helpers


async def _load(session: AsyncSession, return_id: uuid.UUID, *, for_update: bool = True) -> ReturnRequest:
    request = await repo.get_request(session, return_id, for_update=for_update)
    if request is None:
        raise ReturnNotFound(f"no return {return_id}", return_id=str(return_id))
    return request


async def _transition(
    session: AsyncSession,
    request: ReturnRequest,
    to: str,
    *,
    actor: str,
    note: str | None = None,
    values: dict[str, Any] | None = None,
) -> StatusChange:
    current = request.status
    if to not in TRANSITIONS.get(current, frozenset()):
        raise InvalidReturnTransition(
            f"return {request.id} is {current}; it cannot become {to}", status=current, requested=to
        )
    if not await repo.update_request_if(
        session, request.id, status=current, values={"status": to, **(values or {})}
    ):
        raise InvalidReturnTransition(
            f"return {request.id} changed concurrently", status=current, requested=to
        )
    await repo.add_history(session, request.id, current, to, actor, note)
    set_committed_value(request, "status", to)
    return StatusChange(return_id=request.id, status=to, previous_status=current, changed=True)


def _unchanged(request: ReturnRequest) -> StatusChange:
    return StatusChange(
        return_id=request.id, status=request.status, previous_status=request.status, changed=False
    )


# --------------------------------------------------------------------------------------------
# Operations


async def create_request(
    session: AsyncSession,
    *,
    return_id: uuid.UUID,
    order: OrderSnapshot,
    lines: Sequence[ReturnLineIn],
    user_id: uuid.UUID,
    window_days: int,
    auto_approve_under_amount: int | None,
    now: datetime,
    workflow_id: str | None = None,
) -> CreatedReturn:
    if order.user_id != user_id:
        raise ReturnNotFound(
            f"order {order.order_id} is not an order of this user", order_id=str(order.order_id)
        )
    if order.delivered_at is None:
        raise OrderNotDelivered(
            f"order {order.order_id} has not been delivered", order_id=str(order.order_id)
        )
    deadline = order.delivered_at + timedelta(days=window_days)
    if now > deadline:
        raise ReturnWindowClosed(
            f"the {window_days}-day return window of order {order.order_id} closed at {deadline.isoformat()}",
            order_id=str(order.order_id),
            closed_at=deadline.isoformat(),
        )
    by_id = {item.order_item_id: item for item in order.items}
    for line in lines:
        if line.order_item_id not in by_id:
            raise OrderItemNotInOrder(
                f"{line.order_item_id} is not a line of order {order.order_id}",
                order_item_id=str(line.order_item_id),
            )

    await repo.lock_order(session, order.order_id)
    claimed = await repo.claimed_quantities(session, order.order_id)
    estimate: list[RefundLine] = []
    for line in lines:
        item = by_id[line.order_item_id]
        held = claimed.get(line.order_item_id, 0)
        returnable = item.quantity - held
        if line.quantity > returnable:
            raise QuantityNotReturnable(
                f"{line.quantity} units of {line.order_item_id} asked for; {returnable} can still be returned",
                order_item_id=str(line.order_item_id),
                requested=line.quantity,
                returnable=max(returnable, 0),
            )
        estimate.append(refund_line(item, line.quantity, held))
    requested_amount = sum(r.refund_amount for r in estimate)
    reasons = {line.reason for line in lines}
    rma = rma_number_for(return_id)
    inserted = await repo.insert_request(
        session,
        {
            "id": return_id,
            "order_id": order.order_id,
            "user_id": user_id,
            "rma_number": rma,
            "status": St.REQUESTED,
            "reason": reasons.pop() if len(reasons) == 1 else "multiple",
            "currency": order.currency,
            "requested_amount": requested_amount,
            "order_snapshot": order.model_dump(mode="json"),
            "requested_at": now,
            "workflow_id": workflow_id,
        },
    )
    if not inserted:
        raise ReturnAlreadyExists(f"return {return_id} already exists", return_id=str(return_id))
    for line in lines:
        session.add(
            ReturnItem(
                return_request_id=return_id,
                order_item_id=line.order_item_id,
                variant_id=by_id[line.order_item_id].variant_id,
                reason=line.reason,
                quantity_requested=line.quantity,
                unit_price_amount=by_id[line.order_item_id].unit_price_amount,
            )
        )
    await session.flush()
    await repo.add_history(session, return_id, None, St.REQUESTED, f"user:{user_id}", None)

    auto = auto_approve_under_amount is not None and requested_amount < auto_approve_under_amount
    status: str = St.REQUESTED
    if auto:
        request = await _load(session, return_id)
        await _transition(
            session,
            request,
            St.APPROVED,
            actor=AUTO_APPROVER,
            note=f"requested amount {requested_amount} under {auto_approve_under_amount}",
            values={"auto_approved": True, "decided_at": func.now(), "decided_by": AUTO_APPROVER},
        )
        status = St.APPROVED
    return CreatedReturn(
        return_id=return_id,
        rma_number=rma,
        status=status,
        auto_approved=auto,
        requested_amount=requested_amount,
        currency=order.currency,
    )


async def decide(
    session: AsyncSession, return_id: uuid.UUID, *, approve: bool, actor: str, note: str | None
) -> StatusChange:
    """Support's decision on a requested return; deciding the same way again changes nothing."""
    request = await _load(session, return_id)
    target = St.APPROVED if approve else St.REJECTED
    if request.status == target:
        return _unchanged(request)
    if request.status != St.REQUESTED:
        raise InvalidReturnTransition(
            f"return {return_id} is {request.status}; only a requested return can be decided",
            status=request.status,
        )
    return await _transition(
        session,
        request,
        target,
        actor=actor,
        note=note,
        values={"decided_at": func.now(), "decided_by": actor, "decision_note": note},
    )


async def authorize(
    session: AsyncSession,
    return_id: uuid.UUID,
    *,
    tracking_number: str | None,
    label_url: str | None,
    expires_at: datetime,
    actor: str = "system",
) -> StatusChange:
    """Issue the RMA with its return label: approved -> awaiting_parcel."""
    request = await _load(session, return_id)
    if request.status != St.APPROVED:
        raise InvalidReturnTransition(
            f"return {return_id} is {request.status}; only an approved return can be authorized",
            status=request.status,
        )
    session.add(
        ReturnAuthorization(
            return_request_id=return_id,
            rma_code=request.rma_number,
            label_tracking_number=tracking_number,
            label_url=label_url,
            expires_at=expires_at,
        )
    )
    await session.flush()
    return await _transition(
        session, request, St.AWAITING_PARCEL, actor=actor, note=f"RMA valid until {expires_at.isoformat()}"
    )


async def record_parcel_received(session: AsyncSession, return_id: uuid.UUID, *, actor: str) -> StatusChange:
    request = await _load(session, return_id)
    if request.status == St.RECEIVED:
        return _unchanged(request)
    change = await _transition(session, request, St.RECEIVED, actor=actor, values={"received_at": func.now()})
    await repo.set_authorization_status(
        session, return_id, from_=AuthorizationStatus.ACTIVE, to=AuthorizationStatus.USED
    )
    return change


async def record_inspection(
    session: AsyncSession, return_id: uuid.UUID, *, lines: Sequence[InspectionLineIn], actor: str
) -> InspectionOutcome:
    """Accepted quantities and conditions: received -> inspected, with the refund amount and restock lines."""
    request = await _load(session, return_id)
    if request.status != St.RECEIVED:
        raise InvalidReturnTransition(
            f"return {return_id} is {request.status}; only a received parcel can be inspected",
            status=request.status,
        )
    order = OrderSnapshot.model_validate(request.order_snapshot)
    by_order_item = {item.order_item_id: item for item in order.items}
    rows = {row.order_item_id: row for row in await repo.items(session, return_id)}
    inspected = {line.order_item_id: line for line in lines}
    if set(inspected) != set(rows):
        raise InvalidInspection(
            "the inspection must cover exactly the return's lines",
            missing=sorted(str(i) for i in set(rows) - set(inspected)),
            unknown=sorted(str(i) for i in set(inspected) - set(rows)),
        )
    accepted_before = await repo.accepted_quantities(session, request.order_id, excluding=return_id)
    refund_lines: list[RefundLine] = []
    restock: dict[uuid.UUID, int] = {}
    for order_item_id, row in rows.items():
        line = inspected[order_item_id]
        if line.quantity_accepted > row.quantity_requested:
            raise InvalidInspection(
                f"{line.quantity_accepted} units of {order_item_id} accepted; only {row.quantity_requested} were sent",
                order_item_id=str(order_item_id),
            )
        computed = refund_line(
            by_order_item[order_item_id], line.quantity_accepted, accepted_before.get(order_item_id, 0)
        )
        refund_lines.append(computed)
        row.quantity_accepted = line.quantity_accepted
        row.condition = line.condition
        row.discount_share_amount = computed.discount_share_amount
        row.refund_amount = computed.refund_amount
        if line.quantity_accepted > 0 and line.condition in RESTOCKABLE and row.variant_id is not None:
            restock[row.variant_id] = restock.get(row.variant_id, 0) + line.quantity_accepted

    everything_back = all(
        accepted_before.get(item.order_item_id, 0)
        + (inspected[item.order_item_id].quantity_accepted if item.order_item_id in inspected else 0)
        == item.quantity
        for item in order.items
    )
    seller_fault = all(row.reason in SELLER_FAULT for row in rows.values())
    shipping = order.shipping_amount if everything_back and seller_fault else 0
    result = breakdown(refund_lines, shipping, request.currency)
    await session.flush()
    await _transition(
        session,
        request,
        St.INSPECTED,
        actor=actor,
        note=f"refund {result.total_amount} {request.currency}",
        values={
            "inspected_at": func.now(),
            "refund_amount": result.total_amount,
            "refund_breakdown": result.model_dump(mode="json"),
        },
    )
    return InspectionOutcome(
        return_id=return_id,
        refund_amount=result.total_amount,
        currency=request.currency,
        restock_lines=[RestockLine(variant_id=v, quantity=q) for v, q in restock.items()],
        payment_id=order.payment_id,
        breakdown=result,
    )


async def record_refund(
    session: AsyncSession,
    return_id: uuid.UUID,
    *,
    payment_id: uuid.UUID,
    amount: int,
    provider_refund_id: str | None,
    status: str,
    actor: str = "system",
) -> RefundRecorded:
    """Record a refund the payment service made (or is making); fully refunded -> refunded."""
    request = await _load(session, return_id)
    if request.status not in (St.INSPECTED, St.REFUNDED):
        raise InvalidReturnTransition(
            f"return {return_id} is {request.status}; refunds follow the inspection", status=request.status
        )
    approved = request.refund_amount or 0
    existing = await repo.refund_by_provider_id(session, provider_refund_id) if provider_refund_id else None
    if existing is not None and existing.return_request_id != return_id:
        raise RefundMismatch(
            f"provider refund {provider_refund_id} belongs to another return",
            provider_refund_id=provider_refund_id,
        )
    committed = await repo.committed_refund_total(
        session, return_id, excluding=existing.id if existing else None
    )
    if status != RefundStatus.FAILED and committed + amount > approved:
        raise RefundExceedsApproved(
            f"refunding {amount} would bring return {return_id} to {committed + amount}; its refund is {approved}",
            approved=approved,
            already=committed,
        )
    if existing is None:
        refund = Refund(
            return_request_id=return_id,
            payment_id=payment_id,
            amount=amount,
            currency=request.currency,
            status=status,
            provider_refund_id=provider_refund_id,
            breakdown=request.refund_breakdown or {},
        )
        session.add(refund)
    else:
        refund = existing
        refund.status = status
        refund.amount = amount
        refund.updated_at = datetime.now().astimezone()
    await session.flush()
    refunded = await repo.succeeded_refund_total(session, return_id)
    if request.status == St.INSPECTED and refunded >= approved and status == RefundStatus.SUCCEEDED:
        await _transition(
            session, request, St.REFUNDED, actor=actor, note=f"refunded {refunded} {request.currency}"
        )
    return RefundRecorded(
        return_id=return_id,
        refund_id=refund.id,
        refund_status=refund.status,
        return_status=request.status,
        refunded_total=refunded,
    )


async def set_status(
    session: AsyncSession, return_id: uuid.UUID, *, status: str, actor: str, note: str | None
) -> StatusChange:
    """Close, expire or cancel a return (the other statuses have their own operations)."""
    request = await _load(session, return_id)
    if request.status == status:
        return _unchanged(request)
    if status not in SETTABLE:
        raise InvalidReturnTransition(
            f"{status} is reached through its own operation, not set_status",
            status=request.status,
            requested=status,
        )
    change = await _transition(session, request, status, actor=actor, note=note)
    if status in (St.EXPIRED, St.CANCELLED):
        await repo.set_authorization_status(
            session,
            return_id,
            from_=AuthorizationStatus.ACTIVE,
            to=AuthorizationStatus.EXPIRED if status == St.EXPIRED else AuthorizationStatus.CANCELLED,
        )
    return change


async def record_tracking_event(
    session: AsyncSession,
    *,
    carrier_event_id: str,
    tracking_number: str,
    status: str,
    occurred_at: datetime,
    location: str | None = None,
    description: str | None = None,
) -> TrackingRecorded:
    """Keep a carrier event of a return parcel (found by its RMA label); redeliveries are duplicates."""
    auth = await repo.authorization_by_tracking(session, tracking_number)
    if auth is None:
        raise ReturnNotFound(
            f"no return label with tracking number {tracking_number}", tracking_number=tracking_number
        )
    inserted = await repo.insert_tracking(
        session,
        {
            "id": uuid.uuid4(),
            "return_request_id": auth.return_request_id,
            "carrier_event_id": carrier_event_id,
            "status": status,
            "occurred_at": occurred_at,
            "location": location,
            "description": description,
        },
    )
    return TrackingRecorded(
        return_id=auth.return_request_id, duplicate=not inserted, delivered=inserted and status == "delivered"
    )


async def get(session: AsyncSession, return_id: uuid.UUID, *, user_id: uuid.UUID | None = None) -> ReturnView:
    """The whole return; with ``user_id`` another user's return is ``ReturnNotFound``."""
    request = await _load(session, return_id, for_update=False)
    if user_id is not None and request.user_id != user_id:
        raise ReturnNotFound(f"no return {return_id}", return_id=str(return_id))
    auth = await repo.authorization(session, return_id)
    return ReturnView(
        id=request.id,
        order_id=request.order_id,
        user_id=request.user_id,
        rma_number=request.rma_number,
        status=request.status,
        reason=request.reason,
        resolution=request.resolution,
        currency=request.currency,
        requested_amount=request.requested_amount,
        refund_amount=request.refund_amount,
        auto_approved=request.auto_approved,
        requested_at=request.requested_at,
        decided_at=request.decided_at,
        decided_by=request.decided_by,
        decision_note=request.decision_note,
        received_at=request.received_at,
        inspected_at=request.inspected_at,
        workflow_id=request.workflow_id,
        version=request.version,
        items=[ItemView.model_validate(i) for i in await repo.items(session, return_id)],
        authorization=AuthorizationView.model_validate(auth) if auth else None,
        history=[HistoryView.model_validate(h) for h in await repo.history(session, return_id)],
        refunds=[RefundView.model_validate(r) for r in await repo.refunds(session, return_id)],
    )


async def list_for_user(session: AsyncSession, user_id: uuid.UUID) -> list[ReturnView]:
    return [await get(session, r.id) for r in await repo.requests_of_user(session, user_id)]
