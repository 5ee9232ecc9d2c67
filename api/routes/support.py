"""Support staff: order lookup with live saga state, internal notes, and parked sagas.

Orders are read from the order service (any customer's; the ``support`` role is required, ``admin``
implies it). The saga state comes from Temporal: a batch visibility query for a list (search
attributes, no worker round trip), the checkout workflow's ``query_status`` for one order. A saga
that cannot finish by itself parks with ``NeedsAttention = true`` and waits for a decision; support
lists those and answers with the workflow's ``resolve`` update (``retry`` the step or ``skip`` it).
Return decisions live under ``/v1/support/returns`` (api/routes/returns_support.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import Caller, SupportUser
from api.deps import SessionsDep, SettingsDep, TemporalDep
from api.middleware import strict_json_body
from api.problems import problem_responses
from core.errors import BusinessError, Conflict, NotFound
from core.temporal import CUSTOMER_ID, NEEDS_ATTENTION, ORDER_ID, ORDER_STATUS, SAGA_STEP
from services.order import service as order_service
from services.order.models import NoteVisibility, OrderStatus
from services.order.schemas import NoteView, OrderSummary, OrderView
from workflows.checkout import CheckoutWorkflow
from workflows.messages import CheckoutStatus, PaymentState
from workflows.payment import PaymentWorkflow
from workflows.saga import Resolution

log = logging.getLogger("api.support")
router = APIRouter(prefix="/v1/support", tags=["support"])

# Workflow ids are ours (``checkout-<uuid>-<hash>``, ``payment-<uuid>`` ...): a strict pattern keeps
# them out of visibility queries' quoting and out of logs' surprises.
WORKFLOW_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,199}$"
ORDER_NUMBER_PATTERN = r"^[A-Za-z]{2}-\d{4}-\d{6,}$"
QUERY_TIMEOUT_S = 3.0
WorkflowIdPath = Annotated[
    str,
    Path(
        pattern=WORKFLOW_ID_PATTERN,
        description="the saga's workflow id",
        examples=["checkout-6f1c2a57-9a43-4d0e-8d1c-3f1f8e8f7a11-4b1d"],
    ),
]


async def _support(caller: SupportUser, _: Annotated[None, Depends(strict_json_body)]) -> Caller:
    """The support role first (401/403), then the body's JSON types (422)."""
    return caller


Support = Annotated[Caller, Depends(_support)]


class SagaUnavailable(BusinessError):
    status = 503
    title = "The saga is not reachable right now"


class SagaNotFound(NotFound):
    title = "No such saga"


class NothingToResolve(Conflict):
    title = "The saga is not waiting for a decision"


# -- orders ------------------------------------------------------------------------------------------


class SagaSummary(BaseModel):
    """A saga as Temporal's visibility store sees it (search attributes; no worker round trip)."""

    workflow_id: str
    workflow_type: str
    execution_status: str = Field(examples=["RUNNING"])
    order_status: str | None = Field(description="the saga's own status (OrderStatus search attribute)")
    step: str | None = Field(description="the step it is at (SagaStep search attribute)")
    needs_attention: bool


class SupportOrderRow(BaseModel):
    order: OrderSummary
    saga: SagaSummary | None = Field(description="null: no saga found, or Temporal did not answer in time")


class SupportOrderPage(BaseModel):
    items: list[SupportOrderRow]
    next_cursor: str | None


class SupportOrderDetail(BaseModel):
    order: OrderView = Field(description="the order row with items, address and its status history")
    saga: CheckoutStatus | None = Field(description="the checkout saga's live state (query)")
    payment: PaymentState | None = Field(description="the payment saga's live state (query)")
    notes: list[NoteView] = Field(description="internal and customer-visible notes, oldest first")


class NoteIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"body": "Customer called: the parcel is for a neighbour.", "visibility": "internal"}
            ]
        },
    )

    body: str = Field(min_length=1, max_length=10_000, pattern=r"\S")
    visibility: NoteVisibility = Field(
        default=NoteVisibility.INTERNAL, description="internal: support only; customer: shown to the shopper"
    )


@router.get(
    "/orders",
    response_model=SupportOrderPage,
    summary="Find orders by order number, customer or status",
    description="Give `order_number` (exact), or `customer_id` (optionally with `status`), or `status` "
    "alone. Newest first, `limit` per page; pass `next_cursor` back as `cursor` for the next page. "
    "Each row carries the saga's state from the visibility store.",
    responses=problem_responses(401, 403, 422),
)
async def find_orders(
    caller: Support,
    sessions: SessionsDep,
    client: TemporalDep,
    order_number: Annotated[
        str | None, Query(pattern=ORDER_NUMBER_PATTERN, max_length=40, examples=["SO-2025-000042"])
    ] = None,
    customer_id: Annotated[uuid.UUID | None, Query(description="the shopper's user id")] = None,
    status: Annotated[list[OrderStatus] | None, Query(description="one or more statuses")] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SupportOrderPage:
    async with sessions["order"]() as s:
        if order_number is not None:
            try:
                found = await order_service.get_order_by_number(s, order_number)
            except NotFound:
                return SupportOrderPage(items=[], next_cursor=None)
            orders, next_cursor = [OrderSummary.model_validate(found.model_dump())], None
        else:
            page = await order_service.list_orders(
                s, user_id=customer_id, statuses=status, cursor=cursor, limit=limit
            )
            orders, next_cursor = page.orders, page.next_cursor
    sagas = await _saga_summaries(client, [o.id for o in orders])
    return SupportOrderPage(
        items=[SupportOrderRow(order=o, saga=sagas.get(o.id)) for o in orders], next_cursor=next_cursor
    )


@router.get(
    "/orders/{order_id}",
    response_model=SupportOrderDetail,
    summary="One order (any customer's) with its live saga state, status history and notes",
    responses=problem_responses(401, 403, 404, 422),
)
async def get_order(
    order_id: uuid.UUID, caller: Support, sessions: SessionsDep, client: TemporalDep
) -> SupportOrderDetail:
    async with sessions["order"]() as s:
        order = await order_service.get_order(s, order_id)
        notes = await order_service.list_notes(s, order_id, include_internal=True)
    saga, payment = await asyncio.gather(
        _query(client, order.workflow_id, CheckoutWorkflow.query_status) if order.workflow_id else _none(),
        _query(client, f"payment-{order.id}", PaymentWorkflow.state) if order.payment_id else _none(),
    )
    return SupportOrderDetail(order=order, saga=saga, payment=payment, notes=notes)


@router.get(
    "/orders/{order_id}/notes",
    response_model=list[NoteView],
    summary="The notes on an order, oldest first",
    responses=problem_responses(401, 403, 404, 422),
)
async def list_notes(order_id: uuid.UUID, caller: Support, sessions: SessionsDep) -> list[NoteView]:
    async with sessions["order"]() as s:
        await order_service.get_order(s, order_id)  # 404 for an unknown order, not an empty list
        return await order_service.list_notes(s, order_id, include_internal=True)


@router.post(
    "/orders/{order_id}/notes",
    status_code=201,
    response_model=NoteView,
    summary="Add a note to an order (internal by default)",
    responses=problem_responses(401, 403, 404, 422),
)
async def add_note(order_id: uuid.UUID, body: NoteIn, caller: Support, sessions: SessionsDep) -> NoteView:
    async with sessions["order"]() as s, s.begin():
        return await order_service.add_note(
            s, order_id, body=body.body, visibility=body.visibility, author_id=caller.user_id
        )


async def _none() -> None:
    return None


async def _query(client: Client, workflow_id: str, query: Any) -> Any:
    """A workflow query with a short bound: the detail view still answers when a worker is slow."""
    try:
        async with asyncio.timeout(QUERY_TIMEOUT_S):
            return await client.get_workflow_handle(workflow_id).query(query)
    except (RPCError, TimeoutError) as exc:
        log.info("query %s of %s did not answer: %s", getattr(query, "__name__", query), workflow_id, exc)
        return None


def _status_name(execution: WorkflowExecution) -> str:
    return execution.status.name if execution.status is not None else "UNKNOWN"


def _summary(execution: WorkflowExecution) -> SagaSummary:
    attrs = execution.typed_search_attributes
    return SagaSummary(
        workflow_id=execution.id,
        workflow_type=execution.workflow_type,
        execution_status=_status_name(execution),
        order_status=attrs.get(ORDER_STATUS),
        step=attrs.get(SAGA_STEP),
        needs_attention=bool(attrs.get(NEEDS_ATTENTION)),
    )


async def _saga_summaries(client: Client, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, SagaSummary]:
    """The checkout saga of each order, in one visibility query (ids are UUIDs: safe to quote)."""
    if not order_ids:
        return {}
    ids = ", ".join(f"'{i}'" for i in order_ids)
    query = f"WorkflowType = 'checkout' AND OrderId IN ({ids})"
    found: dict[uuid.UUID, SagaSummary] = {}
    try:
        async with asyncio.timeout(QUERY_TIMEOUT_S):
            async for execution in client.list_workflows(query, limit=len(order_ids) * 2):
                order_id = execution.typed_search_attributes.get(ORDER_ID)
                if order_id:
                    found.setdefault(uuid.UUID(order_id), _summary(execution))
    except (RPCError, TimeoutError) as exc:
        log.info("saga summaries unavailable: %s", exc)
    return found


# -- parked sagas ------------------------------------------------------------------------------------


class ParkedSaga(BaseModel):
    workflow_id: str
    run_id: str
    workflow_type: str = Field(examples=["checkout"])
    order_id: str | None = Field(description="OrderId search attribute")
    customer_id: str | None = Field(description="CustomerId search attribute")
    step: str | None
    order_status: str | None
    started_at: datetime
    details: str | None = Field(
        description="the workflow's current details (markdown): what is waiting and why; null when the "
        "worker did not answer in time"
    )


class ParkedSagaPage(BaseModel):
    items: list[ParkedSaga]


class SagaView(BaseModel):
    workflow_id: str
    run_id: str
    workflow_type: str
    execution_status: str
    needs_attention: bool
    order_id: str | None
    customer_id: str | None
    step: str | None
    order_status: str | None
    started_at: datetime
    closed_at: datetime | None
    summary: str | None = Field(description="the fixed one-line summary given at start")
    details: str | None = Field(description="current details (markdown), null when closed or not answering")


class ResolveIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"action": "retry", "note": "PSP outage over, try the void again"},
                {"action": "skip", "note": "voided by hand in the PSP dashboard (ticket 4711)"},
            ]
        },
    )

    action: Literal["retry", "skip"] = Field(description="retry the parked step, or skip it and go on")
    note: str = Field(min_length=1, max_length=2000, pattern=r"\S", description="why; kept in the saga log")


class ResolveOutcome(BaseModel):
    workflow_id: str
    action: Literal["retry", "skip"]
    status: Literal["resolved", "accepted"] = Field(
        description="resolved: the saga took the decision; accepted: taken, still being applied"
    )
    status_url: str


def _parked(execution: WorkflowExecution, details: str | None) -> ParkedSaga:
    attrs = execution.typed_search_attributes
    return ParkedSaga(
        workflow_id=execution.id,
        run_id=execution.run_id,
        workflow_type=execution.workflow_type,
        order_id=attrs.get(ORDER_ID),
        customer_id=attrs.get(CUSTOMER_ID),
        step=attrs.get(SAGA_STEP),
        order_status=attrs.get(ORDER_STATUS),
        started_at=execution.start_time,
        details=details,
    )


async def _current_details(client: Client, workflow_id: str, run_id: str | None = None) -> str | None:
    try:
        async with asyncio.timeout(QUERY_TIMEOUT_S):
            metadata = await client.get_workflow_handle(workflow_id, run_id=run_id).query(
                "__temporal_workflow_metadata", result_type=WorkflowMetadata
            )
            return str(metadata.current_details)
    except (RPCError, TimeoutError, ApplicationError) as exc:
        log.info("current details of %s unavailable: %s", workflow_id, exc)
        return None


@router.get(
    "/sagas",
    response_model=ParkedSagaPage,
    summary="Sagas parked as needing attention",
    description="Running sagas with `NeedsAttention = true` (a compensation or a post-pivot step that "
    "cannot succeed by itself), oldest first, with what each one waits for.",
    responses=problem_responses(401, 403, 422, 503),
)
async def list_parked_sagas(
    caller: Support,
    client: TemporalDep,
    workflow_type: Annotated[
        str | None,
        Query(pattern=r"^[a-z][a-z0-9_]{0,49}$", examples=["checkout"], description="only this type"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> ParkedSagaPage:
    query = "NeedsAttention = true AND ExecutionStatus = 'Running'"
    if workflow_type:
        query += f" AND WorkflowType = '{workflow_type}'"
    executions: list[WorkflowExecution] = []
    try:
        async with asyncio.timeout(QUERY_TIMEOUT_S * 2):
            async for execution in client.list_workflows(query, limit=limit):
                executions.append(execution)
    except (RPCError, TimeoutError) as exc:
        raise SagaUnavailable(f"the visibility store did not answer: {exc or 'timeout'}") from exc
    executions.sort(key=lambda e: e.start_time)
    details = await asyncio.gather(*(_current_details(client, e.id, e.run_id) for e in executions))
    return ParkedSagaPage(items=[_parked(e, d) for e, d in zip(executions, details, strict=True)])


@router.get(
    "/sagas/{workflow_id}",
    response_model=SagaView,
    summary="One saga: status, search attributes and current details",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def get_saga(workflow_id: WorkflowIdPath, caller: Support, client: TemporalDep) -> SagaView:
    try:
        async with asyncio.timeout(QUERY_TIMEOUT_S):
            description = await client.get_workflow_handle(workflow_id).describe()
            summary = await description.static_summary()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise SagaNotFound(f"no saga {workflow_id}") from exc
        raise SagaUnavailable(f"Temporal did not answer: {exc}") from exc
    except TimeoutError as exc:
        raise SagaUnavailable("Temporal did not answer in time") from exc
    running = description.status == WorkflowExecutionStatus.RUNNING
    base = _parked(description, await _current_details(client, workflow_id) if running else None)
    return SagaView(
        **base.model_dump(),
        execution_status=_status_name(description),
        needs_attention=bool(description.typed_search_attributes.get(NEEDS_ATTENTION)),
        closed_at=description.close_time,
        summary=summary,
    )


@router.post(
    "/sagas/{workflow_id}/resolve",
    response_model=ResolveOutcome,
    summary="Decide for a parked saga: retry the step or skip it",
    description="Sends the workflow's `resolve` update. 409 when the saga is not waiting for a decision "
    "(or has ended). Answers 202 when the saga took the decision but did not confirm within the API's "
    "bounded wait; follow `status_url`.",
    responses={**problem_responses(401, 403, 404, 409, 422, 503), 202: {"model": ResolveOutcome}},
)
async def resolve_saga(
    workflow_id: WorkflowIdPath,
    body: ResolveIn,
    caller: Support,
    client: TemporalDep,
    settings: SettingsDep,
    response: Response,
) -> ResolveOutcome:
    decision = Resolution(action=body.action, note=body.note, actor=f"support:{caller.user_id}")
    status_url = f"/v1/support/sagas/{workflow_id}"
    handle = client.get_workflow_handle(workflow_id)
    try:
        async with asyncio.timeout(settings.api_workflow_wait_s):
            update = await handle.start_update(
                "resolve", decision, wait_for_stage=WorkflowUpdateStage.ACCEPTED, result_type=str
            )
    except WorkflowUpdateFailedError as exc:  # rejected: nothing is parked, or no such handler
        cause = exc.cause
        raise NothingToResolve(cause.message if isinstance(cause, ApplicationError) else str(exc)) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # an unknown id, or a saga that has ended
            await get_saga(workflow_id, caller, client)  # 404 when unknown
            raise NothingToResolve(f"the saga {workflow_id} has ended") from exc
        raise SagaUnavailable(f"Temporal did not take the decision: {exc}") from exc
    except TimeoutError as exc:
        raise SagaUnavailable("no saga worker took the decision in time; nothing was decided") from exc
    try:
        async with asyncio.timeout(settings.api_workflow_wait_s):
            await update.result()
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise NothingToResolve(cause.message if isinstance(cause, ApplicationError) else str(exc)) from exc
    except (TimeoutError, RPCError):
        response.status_code = 202
        response.headers["Location"] = status_url
        return ResolveOutcome(
            workflow_id=workflow_id, action=body.action, status="accepted", status_url=status_url
        )
    log.info("saga %s resolved by %s: %s (%s)", workflow_id, caller.user_id, body.action, body.note)
    return ResolveOutcome(
        workflow_id=workflow_id, action=body.action, status="resolved", status_url=status_url
    )
