"""Returns: the shopper's request and view, support's decision and inspection (the ``return`` saga).

``POST /v1/orders/{id}/returns`` starts the ``return-{return_id}`` workflow with update-with-start: the
``submitted`` update answers once the return service has recorded the request (eligibility checked),
so a refusal (not delivered, window closed, quantity not returnable) is a problem response and an
accepted request is 202 with the status URL. The API waits at most ``API_WORKFLOW_WAIT_S``.

Support acts through workflow updates (also usable from the Temporal Web UI): ``decide`` and
``inspect``. ``GET /v1/returns/{id}`` shows the return row with the live saga state.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import CurrentUser, SupportUser
from api.deps import SessionsDep, SettingsDep, TemporalDep
from api.problems import problem_responses
from core.errors import BusinessError, IdempotencyKeyReused, InvalidRequest, NotFound
from core.registry import SAGAS_TASK_QUEUE
from core.settings import Settings
from services.auth import service as auth_service
from services.order import service as order_service
from services.returns import errors as return_errors
from services.returns import service as return_service
from services.returns.schemas import (
    ConditionName,
    InspectionLineIn,
    ReturnLineIn,
    ReturnReasonName,
    ReturnView,
)
from workflows.returns import (
    Decision,
    Inspection,
    ReturnInput,
    ReturnOptions,
    ReturnSagaStatus,
    ReturnSubmitted,
    ReturnWorkflow,
    UpdateOutcome,
    return_workflow_id,
)
from workflows.saga import SagaTimings

router = APIRouter(prefix="/v1", tags=["returns"])
RETURN_NAMESPACE = uuid.UUID("b8a3f0d4-7c61-4e0b-a2f9-3d5e6c7b8a90")


# -- bodies and answers ---------------------------------------------------------------------------
class ReturnLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_item_id: uuid.UUID
    quantity: int = Field(gt=0, le=10_000)
    reason: ReturnReasonName


class ReturnRequestBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "order_item_id": "3c1d9a4e-2b7f-4f0a-9c8e-1d2e3f4a5b6c",
                            "quantity": 1,
                            "reason": "defective",
                        }
                    ]
                }
            ]
        },
    )

    items: list[ReturnLine] = Field(min_length=1, max_length=200)


class ReturnAccepted(BaseModel):
    return_id: uuid.UUID
    workflow_id: str
    status: str = Field(description="the saga's status: approved, awaiting_decision, ... or started")
    rma_number: str | None = Field(default=None, examples=["RMA-3C1D9A4E2B7F"])
    auto_approved: bool | None = None
    requested_amount: int | None = Field(default=None, description="estimated refund, minor units")
    currency: str | None = None
    status_url: str


class ReturnDetail(BaseModel):
    return_id: uuid.UUID
    status: str = Field(description="the return row's status, or the saga's while no row exists")
    saga: ReturnSagaStatus | None = Field(description="the live return saga, while it can be queried")
    request: ReturnView | None = Field(description="the return as the return service holds it")


class DecisionBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"approve": True, "note": "defect confirmed from the photos"}]},
    )

    approve: bool
    note: str | None = Field(default=None, max_length=2000, pattern=r"^[^\x00]*$", description="no NUL")


class InspectionLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_item_id: uuid.UUID
    quantity_accepted: int = Field(ge=0, le=10_000)
    condition: ConditionName


class InspectionBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "order_item_id": "3c1d9a4e-2b7f-4f0a-9c8e-1d2e3f4a5b6c",
                            "quantity_accepted": 1,
                            "condition": "opened",
                        }
                    ]
                }
            ]
        },
    )

    items: list[InspectionLine] = Field(min_length=1, max_length=200)


# -- errors ---------------------------------------------------------------------------------------
class ReturnRefused(BusinessError):
    status = 409
    title = "Return refused"


class ReturnNotAwaitingDecision(BusinessError):
    status = 409
    title = "The return is not waiting for a decision"


class ReturnNotAwaitingInspection(BusinessError):
    status = 409
    title = "The return is not waiting for an inspection"


class ReturnSagaUnavailable(BusinessError):
    status = 409
    title = "The return saga has ended"


# The saga reports the return service's refusals by class name; the API answers with the same type.
_KNOWN: dict[str, type[BusinessError]] = {
    cls.__name__: cls
    for cls in (
        return_errors.OrderNotDelivered,
        return_errors.ReturnWindowClosed,
        return_errors.QuantityNotReturnable,
        return_errors.OrderItemNotInOrder,
        return_errors.ReturnNotFound,
        return_errors.ReturnAlreadyExists,
        return_errors.InvalidReturnTransition,
        return_errors.InvalidInspection,
        ReturnNotAwaitingDecision,
        ReturnNotAwaitingInspection,
    )
}


def _refusal(exc: WorkflowUpdateFailedError) -> BusinessError:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        if cause.type == "ValidationError":
            return InvalidRequest(cause.message)
        return _KNOWN.get(cause.type or "", ReturnRefused)(cause.message)
    return ReturnRefused(str(cause or exc))


def return_options(settings: Settings) -> ReturnOptions:
    return ReturnOptions(
        window_days=settings.return_window_days,
        auto_approve_under_amount=settings.return_auto_approve_under_amount,
        decision_timeout_s=settings.return_decision_timeout_s,
        rma_ttl_s=settings.return_rma_ttl_s,
        label_attempts=settings.shipping_label_attempts,
    )


# -- shopper --------------------------------------------------------------------------------------
@router.post(
    "/orders/{order_id}/returns",
    status_code=202,
    response_model=ReturnAccepted,
    summary="Ask to return items of a delivered order",
    description="Eligibility: the order is delivered, inside the return window, and the quantities are "
    "still returnable. Answers 202 with the return id and its status URL (approved at once under the "
    "auto-approval amount, else waiting for support). With an `Idempotency-Key` a retried request "
    "returns the same return.",
    responses=problem_responses(401, 404, 409, 422),
)
async def request_return(
    order_id: uuid.UUID,
    body: ReturnRequestBody,
    caller: CurrentUser,
    settings: SettingsDep,
    sessions: SessionsDep,
    client: TemporalDep,
    response: Response,
    idempotency_key: Annotated[  # str, not str | None: a header is text or absent, never null
        str,  # noqa: RUF013
        Header(min_length=8, max_length=255, alias="Idempotency-Key", description="optional, e.g. a UUID"),
    ] = None,  # type: ignore[assignment]
) -> ReturnAccepted:
    async with sessions["order"]() as s:
        await order_service.get_order(s, order_id, caller.user_id)  # another user's order: 404
    if idempotency_key is None:
        return_id = uuid.uuid4()
    else:
        return_id = uuid.uuid5(RETURN_NAMESPACE, f"{caller.user_id}:{order_id}:{idempotency_key}")
    workflow_id = return_workflow_id(return_id)
    status_url = f"/v1/returns/{return_id}"
    response.headers["Location"] = status_url
    fingerprint = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    if idempotency_key is not None:
        existing = await _existing(sessions, return_id, caller.user_id)
        if existing is not None:
            if await _fingerprint(client.get_workflow_handle(workflow_id)) not in (None, fingerprint):
                raise IdempotencyKeyReused("this Idempotency-Key was used for a different return request")
            return _accepted_from_row(existing, workflow_id, status_url)
    async with sessions["auth"]() as s:
        user = await auth_service.get_user(s, caller.user_id)
    start = WithStartWorkflowOperation(
        ReturnWorkflow.run,
        ReturnInput(
            return_id=return_id,
            order_id=order_id,
            user_id=caller.user_id,
            email=user.email,
            first_name=user.first_name,
            items=[ReturnLineIn.model_validate(line.model_dump()) for line in body.items],
            webhook_url=f"{settings.webhook_base_url}/v1/webhooks/carriers",
            options=return_options(settings),
            timings=SagaTimings.from_settings(settings),
        ),
        id=workflow_id,
        task_queue=SAGAS_TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        memo={"request_fingerprint": fingerprint},
        static_summary=f"return of order {order_id}",
        static_details=f"Shopper `{caller.user_id}` asked to return {sum(i.quantity for i in body.items)} unit(s).",
    )
    try:
        update: WorkflowUpdateHandle[ReturnSubmitted] = await client.start_update_with_start_workflow(
            ReturnWorkflow.submitted,
            start_workflow_operation=start,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
    except WorkflowUpdateFailedError as exc:
        raise _refusal(exc) from exc
    except WorkflowAlreadyStartedError:  # the same key, a saga that has ended without a return row
        saga = await _saga_status(client, workflow_id)
        if saga is not None and saga.status == "refused":
            raise _KNOWN.get(saga.failure_type or "", ReturnRefused)(
                saga.failure_reason or "refused"
            ) from None
        return ReturnAccepted(
            return_id=return_id,
            workflow_id=workflow_id,
            status=saga.status if saga else "unknown",
            status_url=status_url,
        )
    if idempotency_key is not None and await _fingerprint(await start.workflow_handle()) != fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was used for a different return request")
    try:
        async with asyncio.timeout(settings.api_workflow_wait_s):
            submitted = await update.result()
    except WorkflowUpdateFailedError as exc:
        raise _refusal(exc) from exc
    except TimeoutError:
        return ReturnAccepted(
            return_id=return_id, workflow_id=workflow_id, status="started", status_url=status_url
        )
    return ReturnAccepted(
        return_id=return_id,
        workflow_id=workflow_id,
        status="approved" if submitted.status == "approved" else "awaiting_decision",
        rma_number=submitted.rma_number,
        auto_approved=submitted.auto_approved,
        requested_amount=submitted.requested_amount,
        currency=submitted.currency,
        status_url=status_url,
    )


async def _existing(sessions: SessionsDep, return_id: uuid.UUID, user_id: uuid.UUID) -> ReturnView | None:
    async with sessions["return"]() as s:
        try:
            return await return_service.get(s, return_id, user_id=user_id)
        except return_errors.ReturnNotFound:
            return None


def _accepted_from_row(row: ReturnView, workflow_id: str, status_url: str) -> ReturnAccepted:
    return ReturnAccepted(
        return_id=row.id,
        workflow_id=workflow_id,
        status=row.status,
        rma_number=row.rma_number,
        auto_approved=row.auto_approved,
        requested_amount=row.requested_amount,
        currency=row.currency,
        status_url=status_url,
    )


async def _fingerprint(handle: WorkflowHandle[Any, Any]) -> str | None:
    try:
        memo = await (await handle.describe()).memo()
    except RPCError:
        return None
    value = memo.get("request_fingerprint")
    return value if isinstance(value, str) else None


@router.get(
    "/returns/{return_id}",
    response_model=ReturnDetail,
    summary="A return with its live saga status",
    responses=problem_responses(401, 404),
)
async def get_return(
    return_id: uuid.UUID, caller: CurrentUser, sessions: SessionsDep, client: TemporalDep
) -> ReturnDetail:
    return await _detail(return_id, caller.user_id, sessions, client)


async def _detail(
    return_id: uuid.UUID, user_id: uuid.UUID | None, sessions: SessionsDep, client: Client
) -> ReturnDetail:
    # The saga is asked first: it moves to a state only after the activity that writes it has
    # committed, so the row read afterwards is never older than the saga state shown beside it.
    saga = await _saga_status(client, return_workflow_id(return_id))
    async with sessions["return"]() as s:
        try:
            row: ReturnView | None = await return_service.get(s, return_id, user_id=user_id)
        except return_errors.ReturnNotFound:
            row = None
    if row is None and not await _saga_exists(client, return_id, user_id):
        raise return_errors.ReturnNotFound(f"no return {return_id}")
    status = row.status if row else (saga.status if saga else "unknown")
    return ReturnDetail(return_id=return_id, status=status, saga=saga, request=row)


async def _saga_exists(client: Client, return_id: uuid.UUID, user_id: uuid.UUID | None) -> bool:
    """Before the row exists (or when the request was refused), the saga is found by its search
    attributes (the caller's own returns only)."""
    query = f"WorkflowType = 'return' AND ReturnId = '{return_id}'"
    if user_id is not None:
        query += f" AND CustomerId = '{user_id}'"
    async for _ in client.list_workflows(query, limit=1):
        return True
    return False


async def _saga_status(client: Client, workflow_id: str) -> ReturnSagaStatus | None:
    try:
        async with asyncio.timeout(3):
            return await client.get_workflow_handle(workflow_id).query(ReturnWorkflow.query_status)
    except (RPCError, TimeoutError):
        return None


# -- support --------------------------------------------------------------------------------------
@router.get(
    "/support/returns/{return_id}",
    response_model=ReturnDetail,
    summary="Any return with its live saga status (support)",
    tags=["support"],
    responses=problem_responses(401, 403, 404),
)
async def support_get_return(
    return_id: uuid.UUID, caller: SupportUser, sessions: SessionsDep, client: TemporalDep
) -> ReturnDetail:
    return await _detail(return_id, None, sessions, client)


@router.post(
    "/support/returns/{return_id}/decision",
    response_model=UpdateOutcome,
    summary="Approve or reject a return waiting for support (support)",
    description="The `decide` update of the return saga. 409 when the return is not waiting for a "
    "decision; 202 when the saga takes longer than the API waits.",
    tags=["support"],
    responses={**problem_responses(401, 403, 404, 409, 422), 202: {"model": UpdateOutcome}},
)
async def decide_return(
    return_id: uuid.UUID,
    body: DecisionBody,
    caller: SupportUser,
    settings: SettingsDep,
    client: TemporalDep,
    response: Response,
) -> UpdateOutcome:
    decision = Decision(approve=body.approve, note=body.note, actor=f"support:{caller.user_id}")
    return await _update(
        client, settings, response, return_id, ReturnWorkflow.decide, decision, "decision recorded"
    )


@router.post(
    "/support/returns/{return_id}/inspection",
    response_model=UpdateOutcome,
    summary="Record the inspection of a returned parcel (support)",
    description="Accepted quantities and condition per returned line (every line of the return). "
    "The refund (items minus their discount share, shipping when everything came back for a seller "
    "fault), the restock of new/opened units and the order status follow in the saga.",
    tags=["support"],
    responses={**problem_responses(401, 403, 404, 409, 422), 202: {"model": UpdateOutcome}},
)
async def inspect_return(
    return_id: uuid.UUID,
    body: InspectionBody,
    caller: SupportUser,
    settings: SettingsDep,
    client: TemporalDep,
    response: Response,
) -> UpdateOutcome:
    inspection = Inspection(
        items=[InspectionLineIn.model_validate(line.model_dump()) for line in body.items],
        actor=f"support:{caller.user_id}",
    )
    return await _update(
        client, settings, response, return_id, ReturnWorkflow.inspect, inspection, "inspection recorded"
    )


async def _update(
    client: Client,
    settings: Settings,
    response: Response,
    return_id: uuid.UUID,
    update: Any,
    arg: BaseModel,
    pending: str,
) -> UpdateOutcome:
    handle = client.get_workflow_handle(return_workflow_id(return_id))
    try:
        started: WorkflowUpdateHandle[UpdateOutcome] = await handle.start_update(
            update, arg, wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
    except WorkflowUpdateFailedError as exc:
        raise _refusal(exc) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND and not await _saga_exists(client, return_id, None):
            raise NotFound(f"no return {return_id}") from exc
        raise ReturnSagaUnavailable(f"the return saga has ended: {exc.message}") from exc
    try:
        async with asyncio.timeout(settings.api_workflow_wait_s):
            return await started.result()
    except WorkflowUpdateFailedError as exc:
        raise _refusal(exc) from exc
    except TimeoutError:
        response.status_code = 202
        response.headers["Location"] = f"/v1/support/returns/{return_id}"
        return UpdateOutcome(return_id=return_id, status="started", message=f"{pending}; in progress")
