"""Shipment tracking for the shopper: the shipment row, its carrier events and the live shipping saga.

``GET /v1/orders/{id}/shipment`` reads the shipping service (the shipment id is derived from the order
id) after checking that the order is the caller's (another user's order is 404), and adds the
``shipping-{order_id}`` workflow's state while it runs.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field
from temporalio.client import Client
from temporalio.service import RPCError

from api.auth import CurrentUser
from api.deps import SessionsDep, TemporalDep
from api.problems import problem_responses
from core.errors import NotFound
from core.settings import Settings
from services.order import service as order_service
from services.shipping import service as shipping_service
from services.shipping.errors import ShipmentNotFound
from workflows.messages import ShippingOptions
from workflows.shipping import (
    ShippingStatus,
    ShippingWorkflow,
    outbound_shipment_id,
    shipping_workflow_id,
)

router = APIRouter(prefix="/v1", tags=["shipments"])


def shipping_options(settings: Settings) -> ShippingOptions:
    """What the checkout passes to the shipping saga it starts (durations from settings)."""
    return ShippingOptions(
        no_pickup_s=settings.shipping_no_pickup_s,
        no_movement_s=settings.shipping_no_movement_s,
        label_attempts=settings.shipping_label_attempts,
        return_window_days=settings.return_window_days,
    )


class TrackingEvent(BaseModel):
    status: str = Field(examples=["in_transit"])
    description: str | None = Field(examples=["In transit"])
    location: str | None = Field(examples=["Sandbox sort center"])
    occurred_at: datetime


class ShipmentTracking(BaseModel):
    order_id: uuid.UUID
    shipment_id: uuid.UUID
    status: str = Field(
        description="pending, label_purchased, picked_up, in_transit, out_for_delivery, delivered, "
        "exception, returned_to_sender or cancelled",
        examples=["in_transit"],
    )
    carrier_code: str | None = Field(examples=["sandbox"])
    tracking_number: str | None = Field(examples=["SBX1234567890"])
    tracking_url: str | None
    shipped_at: datetime | None
    delivered_at: datetime | None
    events: list[TrackingEvent] = Field(description="carrier events, oldest first")
    saga: ShippingStatus | None = Field(description="the live shipping saga, while it can be queried")


@router.get(
    "/orders/{order_id}/shipment",
    response_model=ShipmentTracking,
    summary="Tracking of an order's shipment",
    description="The parcel's status and carrier events. 404 when the order is not the caller's or "
    "has no shipment yet.",
    responses=problem_responses(401, 404),
)
async def get_shipment(
    order_id: uuid.UUID, caller: CurrentUser, sessions: SessionsDep, client: TemporalDep
) -> ShipmentTracking:
    async with sessions["order"]() as s:
        order = await order_service.get_order(s, order_id, caller.user_id)  # another user's: 404
    shipment_id = order.shipment_id or outbound_shipment_id(order_id)
    # The saga first, the rows after: the rows are never older than the saga state beside them.
    saga = await _saga_status(client, shipping_workflow_id(order_id))
    async with sessions["shipping"]() as s:
        try:
            shipment = await shipping_service.get_shipment(s, shipment_id)
        except ShipmentNotFound:
            raise NotFound(f"order {order_id} has no shipment yet") from None
        history = await shipping_service.tracking_history(s, shipment_id)
    return ShipmentTracking(
        order_id=order_id,
        shipment_id=shipment.id,
        status=shipment.status,
        carrier_code=saga.carrier_code if saga else None,
        tracking_number=shipment.tracking_number,
        tracking_url=saga.tracking_url if saga else None,
        shipped_at=shipment.shipped_at,
        delivered_at=shipment.delivered_at,
        events=[
            TrackingEvent(
                status=e.status, description=e.description, location=e.location, occurred_at=e.occurred_at
            )
            for e in history
        ],
        saga=saga,
    )


async def _saga_status(client: Client, workflow_id: str) -> ShippingStatus | None:
    try:
        async with asyncio.timeout(3):
            return await client.get_workflow_handle(workflow_id).query(ShippingWorkflow.query_status)
    except (RPCError, TimeoutError):
        return None
