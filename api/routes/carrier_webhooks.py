"""Carrier tracking webhooks: verified (HMAC ``Carrier-Signature``, timestamp tolerance), recorded once
per carrier event id, relayed to the saga that follows the parcel as a ``tracking_event`` signal.

Every label is a shipment of the shipping service (outbound parcels and return labels alike), so the
event is recorded there first; a return label's event is also recorded by the return service (its
``return_tracking``), which names the return whose saga waits for the parcel. A redelivered event is
acknowledged (200, ``duplicate``) and relayed again: the sagas deduplicate by event id, so a lost
signal after a recorded event heals on the carrier's retry. An unknown tracking number is 404 (the
carrier retries: the label may not be recorded yet).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from temporalio.client import Client
from temporalio.service import RPCError

from api.deps import SessionsDep, SettingsDep, TemporalDep
from api.problems import problem_responses
from api.routes.webhooks import WebhookAck, verified_json
from services.returns import service as return_service
from services.returns.errors import ReturnNotFound
from services.shipping import service as shipping_service
from services.shipping.errors import ShipmentNotFound
from services.shipping.schemas import CarrierEventStatus, TrackingOutcome
from workflows.returns import return_workflow_id
from workflows.shipping import TrackingSignal, shipping_workflow_id

log = logging.getLogger("api.webhooks")
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class CarrierEventData(BaseModel):
    """``data`` of a ``tracking.updated`` event."""

    model_config = ConfigDict(extra="ignore")

    tracking_number: str = Field(min_length=1, max_length=100)
    status: CarrierEventStatus
    occurred_at: datetime
    location: str | None = Field(default=None, max_length=300)
    description: str | None = Field(default=None, max_length=2000)
    direction: Literal["outbound", "return"] = "outbound"


class CarrierAck(WebhookAck):
    shipment_id: uuid.UUID | None = None
    return_id: uuid.UUID | None = None


@router.post(
    "/carriers",
    response_model=CarrierAck,
    summary="Carrier tracking events (HMAC-signed, Carrier-Signature)",
    description="Bad or missing signature: 401, nothing recorded. Unknown tracking number: 404.",
    responses=problem_responses(400, 401, 404),
)
async def carrier_webhook(
    request: Request,
    settings: SettingsDep,
    sessions: SessionsDep,
    client: TemporalDep,
    carrier_signature: Annotated[str | None, Header(alias="Carrier-Signature")] = None,
) -> CarrierAck:
    payload = await verified_json(
        request, settings.carrier_webhook_secret.get_secret_value(), carrier_signature
    )
    if payload["type"] != "tracking.updated":
        return CarrierAck()  # nothing this platform follows
    try:
        data = CarrierEventData.model_validate(payload.get("data") or {})
    except ValidationError as exc:
        raise HTTPException(
            400, f"the tracking event is malformed: {exc.error_count()} field errors"
        ) from exc
    event_id: str = payload["id"]

    def record(service: Any, session: Any) -> Any:
        return service.record_tracking_event(
            session,
            carrier_event_id=event_id,
            tracking_number=data.tracking_number,
            status=data.status,
            occurred_at=data.occurred_at,
            location=data.location,
            description=data.description,
        )

    shipment: TrackingOutcome | None = None
    async with sessions["shipping"]() as s, s.begin():
        try:
            shipment = await record(shipping_service, s)
        except ShipmentNotFound:
            shipment = None
    return_id: uuid.UUID | None = None
    if data.direction == "return" or (shipment is not None and shipment.direction == "return"):
        async with sessions["return"]() as s, s.begin():
            try:
                recorded = await record(return_service, s)
            except ReturnNotFound:  # the RMA is not recorded yet: the carrier delivers again later
                raise HTTPException(
                    404, f"no return label with tracking number {data.tracking_number}"
                ) from None
        return_id, duplicate = recorded.return_id, recorded.duplicate
    elif shipment is None:
        raise HTTPException(404, f"no label with tracking number {data.tracking_number}")
    else:
        duplicate = shipment.duplicate

    signal = TrackingSignal(
        event_id=event_id,
        status=data.status,
        occurred_at=data.occurred_at,
        location=data.location,
        description=data.description,
        first_scan=shipment.first_scan if shipment else False,
        delivered=shipment.delivered if shipment else data.status == "delivered",
    )
    if return_id is not None:
        await _relay(client, return_workflow_id(return_id), signal)
    elif shipment is not None:
        await _relay(client, shipping_workflow_id(shipment.order_id), signal)
    return CarrierAck(
        duplicate=duplicate, shipment_id=shipment.shipment_id if shipment else None, return_id=return_id
    )


async def _relay(client: Client, workflow_id: str, signal: TrackingSignal) -> None:
    """``tracking_event`` of the shipping or the return saga (both take a TrackingSignal)."""
    try:
        await client.get_workflow_handle(workflow_id).signal("tracking_event", signal)
    except RPCError as exc:  # the saga has ended (or never ran): the recorded event is enough
        log.info("%s did not take carrier event %s: %s", workflow_id, signal.event_id, exc)
