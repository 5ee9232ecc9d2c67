"""Checkout, orders and cancellation: the shopper's side of the checkout saga.

``POST /v1/checkout`` starts the ``checkout`` workflow; the workflow id is derived from the shopper
and the ``Idempotency-Key``, so a retried request finds the same workflow and returns the same order.
``GET /v1/orders/{id}`` shows the order row with the live saga state (a workflow query while it runs).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.user import GetCheckoutDetailsResult
from api.auth import CurrentUser
from api.deps import SessionsDep, SettingsDep, TemporalDep
from api.problems import problem_responses
from api.routes.shipments import shipping_options
from core.db import SessionFactory
from core.errors import BusinessError, IdempotencyKeyReused, NotFound
from core.registry import SAGAS_TASK_QUEUE
from core.settings import Settings
from core.temporal import CUSTOMER_ID, ORDER_ID, ORDER_STATUS
from services.auth import service as auth_service
from services.order import service as order_service
from services.order.models import OrderStatus
from services.order.schemas import OrderPage, OrderView
from services.user import service as user_service
from services.user.errors import AddressNotFound, PaymentMethodExpired, PaymentMethodNotFound
from workflows.checkout import CheckoutWorkflow
from workflows.messages import (
    CancelOutcome,
    CancelRequest,
    CheckoutInput,
    CheckoutStatus,
    PaymentTimings,
)
from workflows.saga import SagaTimings

router = APIRouter(prefix="/v1", tags=["orders"])
ORDER_NAMESPACE = uuid.UUID("6f1c2a57-9a43-4d0e-8d1c-3f1f8e8f7a11")


class CheckoutRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "shipping_address_id": "0b3c5a2e-8e0f-4c38-9d7e-52f0e0d9b0a1",
                    "shipping_method_id": "5a9d8c7b-6e5f-4a3b-2c1d-0e9f8a7b6c5d",
                    "payment_method_id": "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9",
                    "coupon_code": "WELCOME10",
                }
            ]
        },
    )

    shipping_address_id: uuid.UUID
    shipping_method_id: uuid.UUID
    payment_method_id: uuid.UUID
    coupon_code: str | None = Field(default=None, min_length=1, max_length=64)


class CheckoutAccepted(BaseModel):
    order_id: uuid.UUID
    workflow_id: str
    status_url: str


class OrderDetail(BaseModel):
    order_id: uuid.UUID
    status: str  # the order row's status, or the saga's while no row exists yet
    saga: CheckoutStatus | None  # live saga state while the checkout workflow runs
    order: OrderView | None


class CancelBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "ordered by mistake"}]}
    )
    reason: str = Field(default="cancelled by the shopper", min_length=1, max_length=500)


class OrderNotCancellable(BusinessError):
    status = 409
    title = "Order cannot be cancelled"


class SagaUnavailable(BusinessError):
    status = 503
    title = "The order saga is not reachable right now"


def checkout_workflow_id(user_id: uuid.UUID, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"checkout-{user_id}-{digest}"


def order_id_for(workflow_id: str) -> uuid.UUID:
    return uuid.uuid5(ORDER_NAMESPACE, workflow_id)


def checkout_input(
    settings: Settings,
    body: CheckoutRequest,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    email: str,
    first_name: str = "",
    details: GetCheckoutDetailsResult | None = None,
) -> CheckoutInput:
    base = settings.webhook_base_url
    return CheckoutInput(
        details=details,
        order_id=order_id,
        user_id=user_id,
        email=email,
        first_name=first_name,
        shipping_address_id=body.shipping_address_id,
        shipping_method_id=body.shipping_method_id,
        payment_method_id=body.payment_method_id,
        coupon_code=body.coupon_code,
        reservation_ttl_s=settings.reservation_ttl_s,
        payment_timeout_s=settings.payment_action_timeout_s + 300,
        capture_immediately=settings.capture_immediately,
        start_shipping=settings.start_shipping,
        psp_webhook_url=f"{base}/v1/webhooks/payments",
        carrier_webhook_url=f"{base}/v1/webhooks/carriers",
        payment=PaymentTimings(
            action_timeout_s=settings.payment_action_timeout_s,
            authorization_ttl_s=settings.authorization_ttl_s,
            refund_window_s=settings.refund_window_s,
        ),
        timings=SagaTimings.from_settings(settings),
        shipping=shipping_options(settings),
    )


@router.post(
    "/checkout",
    status_code=202,
    response_model=CheckoutAccepted,
    summary="Start a checkout of the shopper's cart",
    description="Answers at once with the order id; follow `status_url`. The same `Idempotency-Key` "
    "again returns the same order (with a different body it is refused).",
    responses=problem_responses(401, 422, 503),
)
async def start_checkout(
    body: CheckoutRequest,
    caller: CurrentUser,
    settings: SettingsDep,
    sessions: SessionsDep,
    client: TemporalDep,
    response: Response,
    idempotency_key: Annotated[
        str,
        Header(
            min_length=8,
            max_length=255,
            alias="Idempotency-Key",
            description="unique per checkout attempt, e.g. a UUID",
        ),
    ],
) -> CheckoutAccepted:
    workflow_id = checkout_workflow_id(caller.user_id, idempotency_key)
    order_id = order_id_for(workflow_id)
    fingerprint = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    async with sessions["auth"]() as s:
        user = await auth_service.get_user(s, caller.user_id)
    try:
        details = await _checkout_details(sessions, caller.user_id, body)
    except RequestValidationError:
        # A retry of an accepted checkout is the same order, even if the address went away since.
        if await _fingerprint_or_none(client.get_workflow_handle(workflow_id)) == fingerprint:
            return _accepted(response, order_id, workflow_id)
        raise
    try:
        await client.start_workflow(
            CheckoutWorkflow.run,
            checkout_input(
                settings,
                body,
                order_id=order_id,
                user_id=caller.user_id,
                email=user.email,
                first_name=user.first_name,
                details=details,
            ),
            id=workflow_id,
            task_queue=SAGAS_TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            # A running or closed checkout with this key raises: only a retry pays for the describe below.
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo={"request_fingerprint": fingerprint},
            # Set with the start (no upsert event in the saga): the Web UI and support find it at once.
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ORDER_ID, str(order_id)),
                    SearchAttributePair(CUSTOMER_ID, str(caller.user_id)),
                    SearchAttributePair(ORDER_STATUS, "started"),
                ]
            ),
            static_summary=f"checkout of order {order_id}",
            static_details=f"Shopper `{caller.user_id}`, Idempotency-Key hash `{workflow_id.rsplit('-', 1)[1]}`.",
        )
    except WorkflowAlreadyStartedError:  # this key was used before (running or finished): same order again
        if await _fingerprint(client.get_workflow_handle(workflow_id)) != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a different checkout request"
            ) from None
    return _accepted(response, order_id, workflow_id)


def _accepted(response: Response, order_id: uuid.UUID, workflow_id: str) -> CheckoutAccepted:
    response.headers["Location"] = f"/v1/orders/{order_id}"
    return CheckoutAccepted(order_id=order_id, workflow_id=workflow_id, status_url=f"/v1/orders/{order_id}")


async def _checkout_details(
    sessions: dict[str, SessionFactory], user_id: uuid.UUID, body: CheckoutRequest
) -> GetCheckoutDetailsResult:
    """The address snapshot and the card of the checkout, read through the user service; an address
    or card that is not the shopper's, or an expired card, is a 422 on its field (no saga starts)."""
    try:
        async with sessions["user"]() as s:
            found = await user_service.get_checkout_details(
                s,
                user_id=user_id,
                address_id=body.shipping_address_id,
                payment_method_id=body.payment_method_id,
            )
    except (AddressNotFound, PaymentMethodNotFound, PaymentMethodExpired) as exc:
        field = "shipping_address_id" if isinstance(exc, AddressNotFound) else "payment_method_id"
        raise RequestValidationError(
            [{"loc": ("body", field), "msg": exc.detail, "type": exc.type}]
        ) from None
    return GetCheckoutDetailsResult(address=found.address, payment_method=found.payment_method)


async def _fingerprint_or_none(handle: WorkflowHandle[Any, Any]) -> str | None:
    try:
        return await _fingerprint(handle)
    except RPCError:  # no such workflow
        return None


async def _fingerprint(handle: WorkflowHandle[Any, Any]) -> str | None:
    description = await handle.describe()
    memo = await description.memo()
    value = memo.get("request_fingerprint")
    return value if isinstance(value, str) else None


@router.get(
    "/orders",
    response_model=OrderPage,
    summary="The shopper's orders, newest first",
    responses=problem_responses(401, 422),
)
async def list_orders(
    caller: CurrentUser,
    sessions: SessionsDep,
    status: Annotated[list[OrderStatus] | None, Query(description="filter by status")] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> OrderPage:
    async with sessions["order"]() as s:
        return await order_service.list_orders(
            s, user_id=caller.user_id, statuses=status, cursor=cursor, limit=limit
        )


@router.get(
    "/orders/{order_id}",
    response_model=OrderDetail,
    summary="An order with its live saga status",
    responses=problem_responses(401, 404),
)
async def get_order(
    order_id: uuid.UUID, caller: CurrentUser, sessions: SessionsDep, client: TemporalDep
) -> OrderDetail:
    order: OrderView | None = None
    async with sessions["order"]() as s:
        try:
            order = await order_service.get_order(s, order_id, caller.user_id)
        except NotFound:
            order = None
    workflow_id = order.workflow_id if order else await _find_checkout(client, order_id, caller.user_id)
    if order is None and workflow_id is None:
        raise NotFound(f"no order {order_id}")
    saga = await _saga_status(client, workflow_id) if workflow_id else None
    if order is not None and saga is not None:
        # Read the row again after the saga answered: the saga moves on only after the activity
        # that wrote the row committed, so the row shown is never older than the saga beside it.
        async with sessions["order"]() as s:
            order = await order_service.get_order(s, order_id, caller.user_id)
    status = order.status.value if order else (saga.status if saga else "unknown")
    return OrderDetail(order_id=order_id, status=status, saga=saga, order=order)


async def _find_checkout(client: Client, order_id: uuid.UUID, user_id: uuid.UUID) -> str | None:
    """Before the order row exists, the saga is found by its search attributes (own orders only)."""
    query = f"WorkflowType = 'checkout' AND OrderId = '{order_id}' AND CustomerId = '{user_id}'"
    async for execution in client.list_workflows(query, limit=1):
        return execution.id
    return None


async def _saga_status(client: Client, workflow_id: str) -> CheckoutStatus | None:
    try:
        async with asyncio.timeout(3):
            return await client.get_workflow_handle(workflow_id).query(CheckoutWorkflow.query_status)
    except (RPCError, TimeoutError):
        return None


@router.post(
    "/orders/{order_id}/cancel",
    response_model=CancelOutcome,
    summary="Cancel an order before it ships",
    description="Compensates the saga: releases or restocks, voids or refunds. Answers 202 with "
    "the status URL when the cancellation takes longer than the API waits.",
    responses={**problem_responses(401, 404, 409, 503), 202: {"model": CancelOutcome}},
)
async def cancel_order(
    order_id: uuid.UUID,
    body: CancelBody,
    caller: CurrentUser,
    sessions: SessionsDep,
    client: TemporalDep,
    settings: SettingsDep,
    response: Response,
) -> CancelOutcome:
    async with sessions["order"]() as s:
        try:
            order: OrderView | None = await order_service.get_order(s, order_id, caller.user_id)
        except NotFound:
            order = None
    workflow_id = order.workflow_id if order else await _find_checkout(client, order_id, caller.user_id)
    if not workflow_id:
        raise NotFound(f"no order {order_id}")
    handle = client.get_workflow_handle(workflow_id)
    try:
        update = await handle.start_update(
            CheckoutWorkflow.cancel,
            CancelRequest(reason=body.reason, actor=str(caller.user_id)),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise OrderNotCancellable(cause.message if isinstance(cause, ApplicationError) else str(exc)) from exc
    except RPCError as exc:  # the workflow is closed (shipped, failed, cancelled)
        raise OrderNotCancellable(
            f"the order can no longer be cancelled ({order.status.value if order else 'closed'})"
        ) from exc
    try:
        async with asyncio.timeout(settings.api_workflow_wait_s):
            return await update.result()
    except TimeoutError:
        response.status_code = 202
        response.headers["Location"] = f"/v1/orders/{order_id}"
        return CancelOutcome(
            accepted=True, status="compensating", message=f"cancelling; follow /v1/orders/{order_id}"
        )
