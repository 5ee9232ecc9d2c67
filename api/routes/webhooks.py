"""Provider webhooks: verified (HMAC, timestamp tolerance), stored once, relayed to the saga as a signal.

A bad or missing signature is 401 and nothing is stored. A redelivered event is acknowledged (200)
without effect; the saga deduplicates signals by event id as well, so a lost acknowledgement is safe.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request
from pydantic import BaseModel
from temporalio.service import RPCError

from api.deps import SessionsDep, SettingsDep, TemporalDep
from api.problems import problem_responses
from sandboxes.signing import InvalidSignature, verify
from services.payment import service as payment_service
from services.payment.schemas import ProviderEvent
from workflows.messages import ProviderSignal
from workflows.payment import PaymentWorkflow

log = logging.getLogger("api.webhooks")
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class WebhookAck(BaseModel):
    received: bool = True
    duplicate: bool = False


async def verified_json(request: Request, secret: str, header: str | None) -> dict[str, Any]:
    body = await request.body()
    try:
        verify(secret, body, header)
    except InvalidSignature as exc:
        raise HTTPException(401, f"invalid webhook signature: {exc.reason}") from exc
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise HTTPException(400, "the webhook body is not JSON") from exc
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("id"), str)
        or not isinstance(payload.get("type"), str)
    ):
        raise HTTPException(400, "the webhook needs an 'id' and a 'type'")
    return payload


@router.post(
    "/payments",
    response_model=WebhookAck,
    summary="PSP events (HMAC-signed, Psp-Signature)",
    responses=problem_responses(400, 401),
)
async def payment_webhook(
    request: Request,
    settings: SettingsDep,
    sessions: SessionsDep,
    client: TemporalDep,
    psp_signature: Annotated[str | None, Header(alias="Psp-Signature")] = None,
) -> WebhookAck:
    payload = await verified_json(request, settings.psp_webhook_secret.get_secret_value(), psp_signature)
    async with sessions["payment"]() as s, s.begin():
        recorded = await payment_service.record_webhook(
            s,
            ProviderEvent(
                provider_event_id=payload["id"],
                event_type=payload["type"],
                payload=payload,
                signature_valid=True,
            ),
        )
    if recorded.order_id is not None:
        data = payload.get("data") or {}
        signal = ProviderSignal(
            event_id=payload["id"],
            type=payload["type"],
            authorization_status=data.get("status"),
            decline_code=data.get("decline_code"),
        )
        try:
            await client.get_workflow_handle(f"payment-{recorded.order_id}").signal(
                PaymentWorkflow.provider_event, signal
            )
        except RPCError as exc:  # the payment saga has ended: the stored event is enough
            log.info(
                "payment saga of order %s did not take event %s: %s", recorded.order_id, payload["id"], exc
            )
    return WebhookAck(duplicate=recorded.duplicate)
