"""HTTP API of the carrier sandbox.

Shipper API (what ``services.shipping.carrier.CarrierSandboxClient`` calls):

* ``POST /v1/rates`` ``{origin, destination, weight_grams, service_level?}`` -> a JSON list of
  ``{service_level, amount, currency, estimated_days}``; 422 ``address_not_serviceable``.
* ``POST /v1/labels`` (``Idempotency-Key`` required) ``{reference, service_level, destination,
  origin?, weight_grams, webhook_url?, direction?}`` -> 201 ``{label_id, tracking_number, label_url,
  amount, currency, status: "label_created", ...}``; 422 ``address_not_serviceable`` /
  ``service_level_unavailable``. ``direction: "return"`` makes a return label (same behaviour).
* ``POST /v1/labels/{id}/void`` (``Idempotency-Key`` optional): unused labels only (409
  ``invalid_state`` once picked up); voiding a voided label answers the label again.
* ``GET /v1/labels/{id}``, ``GET /v1/labels?reference=X``, ``GET /v1/labels/{id}/document``,
  ``GET /v1/tracking/{tracking_number}`` -> ``{tracking_number, status, events: [...]}``.

Control: ``POST /_control/shipments/{tracking_number}/advance`` ``{"event"?: "exception" |
"returned_to_sender"}`` moves the parcel on (label_created -> picked_up -> in_transit ->
out_for_delivery -> delivered) and sends a signed (``Carrier-Signature``) ``tracking.updated``
webhook to the label's ``webhook_url``; ``/_control/faults``, ``/_control/webhooks``, ``/healthz``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import PlainTextResponse, Response

from sandboxes import (
    IDEMPOTENCY_HEADER,
    SandboxRuntime,
    WebhookDispatcher,
    add_control_routes,
    install_problem_handlers,
)
from sandboxes.carrier.state import Address, AdvanceRequest, CarrierState, LabelRequest, RatesRequest
from sandboxes.signing import Secret

SIGNATURE_HEADER = "Carrier-Signature"
OPERATIONS = {"rates", "create_label", "void_label", "get_label", "list_labels", "tracking"}


def default_warehouse() -> Address:
    return Address(country="US", postal_code="10001", city="New York", name="sagashop warehouse")


@dataclass(frozen=True)
class CarrierConfig:
    webhook_secret: Secret
    currency: str = "USD"
    warehouse: Address = field(default_factory=default_warehouse)
    state_file: Path | None = None
    webhook_max_attempts: int = 6
    webhook_backoff_s: float = 0.5


def create_app(config: CarrierConfig) -> FastAPI:
    dispatcher = WebhookDispatcher(
        secret=config.webhook_secret,
        signature_header=SIGNATURE_HEADER,
        max_attempts=config.webhook_max_attempts,
        backoff_s=config.webhook_backoff_s,
    )

    def emit(url: str, event_type: str, data: dict[str, Any]) -> None:
        dispatcher.enqueue(url, WebhookDispatcher.make_event(event_type, data))

    state = CarrierState(warehouse=config.warehouse, currency=config.currency, emit=emit)
    runtime = SandboxRuntime(
        state=state, dispatcher=dispatcher, operations=OPERATIONS, state_file=config.state_file
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        dispatcher.start()
        try:
            yield
        finally:
            await dispatcher.aclose()
            runtime.persist()

    app = FastAPI(title="sagashop carrier sandbox", version="1", lifespan=lifespan)
    app.state.runtime = runtime
    install_problem_handlers(app)
    add_control_routes(app, runtime)

    key_header = Header(default=None, alias=IDEMPOTENCY_HEADER)

    @app.post("/v1/rates")
    async def rates(body: RatesRequest) -> Response:
        return await runtime.read("rates", lambda: state.rates(body))

    @app.post("/v1/labels", status_code=201)
    async def create_label(
        body: LabelRequest, request: Request, idempotency_key: str | None = key_header
    ) -> Response:
        base_url = str(request.base_url)
        return await runtime.write(
            operation="create_label",
            request=request,
            payload=body.model_dump(mode="json"),
            idempotency_key=idempotency_key,
            key_required=True,
            action=lambda: (201, state.create_label(body, base_url=base_url)),
        )

    @app.get("/v1/labels")
    async def list_labels(reference: str | None = None) -> Response:
        return await runtime.read("list_labels", lambda: state.list_labels(reference))

    @app.get("/v1/labels/{label_id}")
    async def get_label(label_id: str) -> Response:
        return await runtime.read("get_label", lambda: state.get_label(label_id))

    @app.get("/v1/labels/{label_id}/document")
    async def label_document(label_id: str) -> PlainTextResponse:
        return PlainTextResponse(state.label_document(label_id))

    @app.post("/v1/labels/{label_id}/void")
    async def void_label(
        label_id: str, request: Request, idempotency_key: str | None = key_header
    ) -> Response:
        return await runtime.write(
            operation="void_label",
            request=request,
            payload={},
            idempotency_key=idempotency_key,
            key_required=False,
            action=lambda: (200, state.void_label(label_id)),
        )

    @app.get("/v1/tracking/{tracking_number}")
    async def tracking(tracking_number: str) -> Response:
        return await runtime.read("tracking", lambda: state.tracking(tracking_number))

    @app.post("/_control/shipments/{tracking_number}/advance")
    async def advance(tracking_number: str, body: AdvanceRequest | None = None) -> dict[str, Any]:
        async with runtime.lock:
            result = state.advance(tracking_number, body or AdvanceRequest())
            runtime.persist()
            return result

    return app
