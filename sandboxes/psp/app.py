"""HTTP API of the PSP sandbox.

Merchant API (what ``services.payment.provider.PspSandboxProvider`` calls):

* ``POST /v1/tokens`` ``{number, exp_month, exp_year, cvc}`` -> 201 ``{token, brand, last4, exp_month,
  exp_year, fingerprint}``; 422 ``invalid_number`` / ``invalid_expiry_month`` / ``invalid_expiry_year``
  / ``expired_card`` / ``invalid_cvc``.
* ``POST /v1/authorizations`` (``Idempotency-Key`` required) ``{token, amount, currency, reference,
  webhook_url?}`` -> 201 authorization, whose ``status`` is ``authorized``, ``declined`` (with
  ``decline_code``) or ``requires_action`` (with ``next_action``); 422 ``invalid_token``.
* ``POST /v1/authorizations/{id}/capture`` ``{amount?}``, ``/void``, ``/refund`` ``{amount}`` (all with
  ``Idempotency-Key`` required); refusals are 409 problems: ``invalid_state``,
  ``authorization_expired``, ``amount_exceeds_authorized``, ``refund_exceeds_captured``.
* ``GET /v1/authorizations/{id}``, ``GET /v1/authorizations?reference=X`` (a JSON list).

Shopper stand-in: ``POST /v1/authorizations/{id}/confirm`` ``{"succeed": bool}`` finishes the extra
step of a ``requires_action`` authorization; the merchant learns the outcome by a signed webhook
(``Psp-Signature``) ``authorization.succeeded`` or ``authorization.failed``. Webhooks are also sent
(when the authorization has a ``webhook_url``) for ``authorization.captured``, ``.voided``,
``.refunded`` and ``.expired``; receivers should acknowledge event types they do not handle.

Control: ``/_control/faults`` (see :class:`sandboxes.FaultRule`), ``/_control/webhooks`` (delivery
log), ``POST /_control/authorizations/{id}/expire`` (expire now), ``GET /healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import Response

from sandboxes import (
    IDEMPOTENCY_HEADER,
    SandboxRuntime,
    WebhookDispatcher,
    add_control_routes,
    install_problem_handlers,
)
from sandboxes.psp.state import (
    AuthorizeRequest,
    CaptureRequest,
    ConfirmRequest,
    PspState,
    RefundRequest,
    TokenRequest,
)
from sandboxes.signing import Secret

SIGNATURE_HEADER = "Psp-Signature"
OPERATIONS = {"tokenize", "authorize", "confirm", "capture", "void", "refund", "get", "list"}
DEFAULT_AUTH_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True)
class PspConfig:
    webhook_secret: Secret
    auth_ttl_s: float = DEFAULT_AUTH_TTL_S
    state_file: Path | None = None
    webhook_max_attempts: int = 6
    webhook_backoff_s: float = 0.5
    sweep_interval_s: float = 1.0


def create_app(config: PspConfig) -> FastAPI:
    dispatcher = WebhookDispatcher(
        secret=config.webhook_secret,
        signature_header=SIGNATURE_HEADER,
        max_attempts=config.webhook_max_attempts,
        backoff_s=config.webhook_backoff_s,
    )

    def emit(url: str, event_type: str, data: dict[str, Any]) -> None:
        dispatcher.enqueue(url, WebhookDispatcher.make_event(event_type, data))

    state = PspState(auth_ttl_s=config.auth_ttl_s, emit=emit)
    runtime = SandboxRuntime(
        state=state, dispatcher=dispatcher, operations=OPERATIONS, state_file=config.state_file
    )

    async def sweep() -> None:
        while True:
            await asyncio.sleep(config.sweep_interval_s)
            async with runtime.lock:
                if state.expire_due():
                    runtime.persist()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        dispatcher.start()
        sweeper = asyncio.create_task(sweep())
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await dispatcher.aclose()
            runtime.persist()

    app = FastAPI(title="sagashop PSP sandbox", version="1", lifespan=lifespan)
    app.state.runtime = runtime
    install_problem_handlers(app)
    add_control_routes(app, runtime)

    key_header = Header(default=None, alias=IDEMPOTENCY_HEADER)

    @app.post("/v1/tokens", status_code=201)
    async def tokenize(body: TokenRequest, request: Request) -> Response:
        # No idempotency here: the record would hold a hash of the card number.
        return await runtime.write(
            operation="tokenize",
            request=request,
            payload=None,
            idempotency_key=None,
            key_required=False,
            action=lambda: (201, state.tokenize(body)),
        )

    @app.post("/v1/authorizations", status_code=201)
    async def authorize(
        body: AuthorizeRequest, request: Request, idempotency_key: str | None = key_header
    ) -> Response:
        base_url = str(request.base_url)
        return await runtime.write(
            operation="authorize",
            request=request,
            payload=body.model_dump(mode="json"),
            idempotency_key=idempotency_key,
            key_required=True,
            action=lambda: (201, state.authorize(body, base_url=base_url)),
        )

    @app.get("/v1/authorizations")
    async def list_authorizations(reference: str | None = None) -> Response:
        def action() -> list[dict[str, Any]]:
            if state.expire_due():
                runtime.persist()
            return state.list_authorizations(reference)

        return await runtime.read("list", action)

    @app.get("/v1/authorizations/{authorization_id}")
    async def get_authorization(authorization_id: str) -> Response:
        def action() -> dict[str, Any]:
            if state.expire_due():
                runtime.persist()
            return state.get(authorization_id)

        return await runtime.read("get", action)

    @app.post("/v1/authorizations/{authorization_id}/confirm", status_code=202)
    async def confirm(
        authorization_id: str,
        body: ConfirmRequest,
        request: Request,
        idempotency_key: str | None = key_header,
    ) -> Response:
        return await runtime.write(
            operation="confirm",
            request=request,
            payload=body.model_dump(mode="json"),
            idempotency_key=idempotency_key,
            key_required=False,
            action=lambda: (202, state.confirm(authorization_id, body)),
        )

    @app.post("/v1/authorizations/{authorization_id}/capture")
    async def capture(
        authorization_id: str,
        request: Request,
        body: CaptureRequest | None = None,
        idempotency_key: str | None = key_header,
    ) -> Response:
        req = body or CaptureRequest()
        return await runtime.write(
            operation="capture",
            request=request,
            payload=req.model_dump(mode="json"),
            idempotency_key=idempotency_key,
            key_required=True,
            action=lambda: (200, state.capture(authorization_id, req)),
        )

    @app.post("/v1/authorizations/{authorization_id}/void")
    async def void(
        authorization_id: str, request: Request, idempotency_key: str | None = key_header
    ) -> Response:
        return await runtime.write(
            operation="void",
            request=request,
            payload={},
            idempotency_key=idempotency_key,
            key_required=True,
            action=lambda: (200, state.void(authorization_id)),
        )

    @app.post("/v1/authorizations/{authorization_id}/refund", status_code=201)
    async def refund(
        authorization_id: str, body: RefundRequest, request: Request, idempotency_key: str | None = key_header
    ) -> Response:
        return await runtime.write(
            operation="refund",
            request=request,
            payload=body.model_dump(mode="json"),
            idempotency_key=idempotency_key,
            key_required=True,
            action=lambda: (201, state.refund(authorization_id, body)),
        )

    @app.post("/_control/authorizations/{authorization_id}/expire")
    async def expire_now(authorization_id: str) -> dict[str, Any]:
        """Make the authorization's expiry time now (instead of waiting ``--auth-ttl-seconds``)."""
        async with runtime.lock:
            result = state.expire_now(authorization_id)
            runtime.persist()
            return result

    return app
