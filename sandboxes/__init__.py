"""Sandbox providers: stand-ins for the outside world with real semantics.

* ``sandboxes.psp`` - a payment service provider (cards, authorize / capture / void / refund, 3-D
  Secure style asynchronous outcomes by signed webhook);
* ``sandboxes.carrier`` - a shipping carrier (rates, labels, tracking events by signed webhook);
* ``sandboxes.smtp_sink`` - an SMTP server that keeps every mail and shows it over HTTP.

This module holds what the PSP and the carrier share: problem responses, the idempotency-key
machinery, fault injection, the webhook dispatcher (signed, retried with backoff, same event id on
every attempt) and the optional JSON state file that lets a restart keep the state.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandboxes.signing import Secret, sign

log = logging.getLogger("sandboxes")

PROBLEM_JSON = "application/problem+json"
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_IDEMPOTENCY_KEY_LENGTH = 255


# --------------------------------------------------------------------------------------------
# Time and ids


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(ts: float) -> str:
    """Unix seconds as an ISO 8601 UTC string with a ``Z`` suffix (millisecond precision)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


# --------------------------------------------------------------------------------------------
# Problem details (RFC 9457)


class Problem(Exception):
    """An error answer as ``application/problem+json`` ``{type, title, detail, ...extra}``.

    ``type`` is a short stable code (``authorization_expired``, ``idempotency_key_reused`` ...).
    ``replayable`` problems are business outcomes: they are stored under the request's idempotency
    key and replayed like a success.
    """

    def __init__(
        self,
        status: int,
        type_: str,
        title: str,
        detail: str,
        *,
        replayable: bool = True,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.type = type_
        self.title = title
        self.detail = detail
        self.replayable = replayable
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, media_type=PROBLEM_JSON)


def install_problem_handlers(app: FastAPI) -> None:
    """Render ``Problem``, request validation errors and HTTP errors as problem details."""

    async def on_problem(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return exc.response()

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p != "body") or "request"
        return Problem(
            422, "validation_error", "Invalid request", f"{where}: {first['msg']}", errors=errors
        ).response()

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return Problem(exc.status_code, code, str(exc.detail), str(exc.detail)).response()

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


# --------------------------------------------------------------------------------------------
# Fault injection

FaultMode = Literal["error", "delay", "accept_then_error", "accept_then_delay"]


class FaultRule(BaseModel):
    """The next ``count`` calls of ``operation`` (``"any"``: every operation) misbehave.

    ``error``: answer ``status_code`` without doing anything. ``delay``: wait ``delay_ms`` first,
    then behave normally. ``accept_then_error``: do the operation (and keep its result under the
    idempotency key), then answer ``status_code`` - the caller never hears that it happened.
    ``accept_then_delay``: do the operation, then wait ``delay_ms`` before answering (a window in
    which the caller can crash after the provider accepted).
    """

    operation: str
    mode: FaultMode
    count: int = Field(default=1, ge=1, le=10_000)
    delay_ms: int = Field(default=0, ge=0, le=120_000)
    status_code: int = Field(default=500, ge=500, le=599)

    @model_validator(mode="after")
    def _delay_needs_ms(self) -> FaultRule:
        if self.mode in ("delay", "accept_then_delay") and self.delay_ms == 0:
            raise ValueError(f"mode '{self.mode}' needs delay_ms > 0")
        return self


class FaultInjector:
    def __init__(self, operations: set[str]) -> None:
        self.operations = frozenset(operations)
        self.rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        if rule.operation != "any" and rule.operation not in self.operations:
            raise Problem(
                422,
                "validation_error",
                "Invalid request",
                f"unknown operation {rule.operation!r}; one of: any, {', '.join(sorted(self.operations))}",
            )
        self.rules.append(rule.model_copy())

    def clear(self) -> None:
        self.rules.clear()

    def take(self, operation: str) -> FaultRule | None:
        """Consume one use of the first rule matching ``operation``."""
        for rule in self.rules:
            if rule.operation in (operation, "any"):
                rule.count -= 1
                if rule.count <= 0:
                    self.rules.remove(rule)
                return rule
        return None


def injected_error(rule: FaultRule, operation: str, *, performed: bool) -> JSONResponse:
    what = "after performing" if performed else "without performing"
    return Problem(
        rule.status_code,
        "injected_fault",
        "Injected fault",
        f"fault injection ({rule.mode}) answered {rule.status_code} {what} {operation}",
        replayable=False,
    ).response()


# --------------------------------------------------------------------------------------------
# Webhooks


class WebhookDelivery(BaseModel):
    event_id: str
    type: str
    url: str
    body: str  # the exact JSON sent on every attempt
    status: Literal["pending", "delivered", "failed"] = "pending"
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: str
    finished_at: str | None = None


class WebhookDispatcher:
    """Sends signed webhooks in the background and retries them with exponential backoff.

    Every attempt carries the same body (so the same event id) and a fresh signature timestamp.
    A non-2xx answer, a connection error or a timeout counts as a failed attempt; after
    ``max_attempts`` the delivery is marked ``failed``. Pending deliveries survive a restart when a
    state file is used (they are resumed on start).
    """

    def __init__(
        self,
        *,
        secret: Secret,
        signature_header: str,
        max_attempts: int = 6,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 5.0,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.secret = secret
        self.signature_header = signature_header
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.on_change = on_change
        self.deliveries: dict[str, WebhookDelivery] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._started = False

    @staticmethod
    def make_event(type_: str, data: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": new_id("evt"), "type": type_, "created": int(time.time()), "data": dict(data)}

    def enqueue(self, url: str, event: Mapping[str, Any]) -> WebhookDelivery:
        delivery = WebhookDelivery(
            event_id=str(event["id"]),
            type=str(event["type"]),
            url=url,
            body=json.dumps(event, separators=(",", ":"), sort_keys=True),
            created_at=isoformat(time.time()),
        )
        self.deliveries[delivery.event_id] = delivery
        if self._started:
            self._spawn(delivery)
        return delivery

    def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        self._started = True
        for delivery in self.deliveries.values():
            if delivery.status == "pending":
                self._spawn(delivery)

    async def aclose(self) -> None:
        self._started = False
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def dump(self) -> list[dict[str, Any]]:
        return [d.model_dump() for d in self.deliveries.values()]

    def restore(self, data: list[dict[str, Any]]) -> None:
        self.deliveries = {d["event_id"]: WebhookDelivery.model_validate(d) for d in data}

    def _spawn(self, delivery: WebhookDelivery) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        assert self._client is not None
        body = delivery.body.encode("utf-8")
        while delivery.status == "pending":
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "sagashop-sandbox-webhooks/1",
                self.signature_header: sign(self.secret, body),
            }
            try:
                response = await self._client.post(delivery.url, content=body, headers=headers)
                delivery.last_status_code = response.status_code
                delivery.last_error = None if response.is_success else f"HTTP {response.status_code}"
                ok = response.is_success
            except httpx.HTTPError as exc:
                delivery.last_status_code = None
                delivery.last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
                ok = False
            delivery.attempts += 1
            if ok:
                delivery.status = "delivered"
            elif delivery.attempts >= self.max_attempts:
                delivery.status = "failed"
                log.warning(
                    "webhook %s to %s failed after %d attempts",
                    delivery.event_id,
                    delivery.url,
                    delivery.attempts,
                )
            if delivery.status != "pending":
                delivery.finished_at = isoformat(time.time())
            self.on_change()
            if delivery.status == "pending":
                delay = min(self.backoff_s * 2 ** (delivery.attempts - 1), self.max_backoff_s)
                await asyncio.sleep(delay)


# --------------------------------------------------------------------------------------------
# Idempotency and persistence


class IdempotencyRecord(BaseModel):
    fingerprint: str
    status_code: int
    body: Any
    created_at: str


def fingerprint(method: str, path: str, payload: Any) -> str:
    canonical = json.dumps([method.upper(), path, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class SandboxState(Protocol):
    def dump(self) -> dict[str, Any]: ...

    def restore(self, data: dict[str, Any]) -> None: ...


class StateFile:
    """A JSON document written atomically (temporary file + rename) after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"state file {self.path} does not hold a JSON object")
        return data

    def save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, self.path)


class SandboxRuntime:
    """State + idempotency records + faults + webhooks of one sandbox process, behind one lock."""

    STATE_VERSION = 1

    def __init__(
        self,
        *,
        state: SandboxState,
        dispatcher: WebhookDispatcher,
        operations: set[str],
        state_file: Path | None = None,
    ) -> None:
        self.state = state
        self.dispatcher = dispatcher
        self.faults = FaultInjector(operations)
        self.idempotency: dict[str, IdempotencyRecord] = {}
        self.lock = asyncio.Lock()
        self.store = StateFile(state_file) if state_file else None
        dispatcher.on_change = self.persist
        if self.store is not None:
            data = self.store.load()
            if data is not None:
                self.state.restore(data["state"])
                self.idempotency = {
                    k: IdempotencyRecord.model_validate(v) for k, v in data["idempotency"].items()
                }
                self.dispatcher.restore(data["webhooks"])

    def persist(self) -> None:
        if self.store is None:
            return
        self.store.save(
            {
                "version": self.STATE_VERSION,
                "state": self.state.dump(),
                "idempotency": {k: v.model_dump() for k, v in self.idempotency.items()},
                "webhooks": self.dispatcher.dump(),
            }
        )

    async def _before(self, operation: str) -> tuple[FaultRule | None, JSONResponse | None]:
        rule = self.faults.take(operation)
        if rule is None:
            return None, None
        if rule.mode == "delay":
            await asyncio.sleep(rule.delay_ms / 1000)
        elif rule.mode == "error":
            return rule, injected_error(rule, operation, performed=False)
        return rule, None

    async def read(self, operation: str, action: Callable[[], Any]) -> Response:
        """A read: faults apply, no idempotency."""
        _, early = await self._before(operation)
        if early is not None:
            return early
        async with self.lock:
            return JSONResponse(action())

    async def write(
        self,
        *,
        operation: str,
        request: Request,
        payload: Any,
        idempotency_key: str | None,
        key_required: bool,
        action: Callable[[], tuple[int, Any]],
    ) -> Response:
        """Run a state-changing ``action`` with fault injection and idempotency-key semantics.

        Same key and same request (method, path, JSON payload): the first answer again (status
        code and body, header ``Idempotent-Replayed: true``). Same key, other request: 409
        ``idempotency_key_reused``. Business refusals (``Problem`` with ``replayable``) are stored
        and replayed like successes; injected errors and validation errors are not stored.
        """
        if idempotency_key is not None:
            idempotency_key = idempotency_key.strip()
            if not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
                raise Problem(
                    400,
                    "invalid_idempotency_key",
                    "Invalid Idempotency-Key",
                    f"the {IDEMPOTENCY_HEADER} header must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
                    replayable=False,
                )
        elif key_required:
            raise Problem(
                400,
                "idempotency_key_required",
                "Idempotency-Key required",
                f"this operation needs an {IDEMPOTENCY_HEADER} header",
                replayable=False,
            )
        rule, early = await self._before(operation)
        if early is not None:
            return early
        replayed = False
        async with self.lock:
            fp = fingerprint(request.method, request.url.path, payload)
            record = self.idempotency.get(idempotency_key) if idempotency_key else None
            if record is not None:
                if record.fingerprint != fp:
                    raise Problem(
                        409,
                        "idempotency_key_reused",
                        "Idempotency key reused",
                        f"{IDEMPOTENCY_HEADER} {idempotency_key!r} was already used with a different request",
                        replayable=False,
                    )
                status_code, body = record.status_code, record.body
                replayed = True
            else:
                try:
                    status_code, body = action()
                except Problem as problem:
                    if not problem.replayable:
                        raise
                    status_code, body = problem.status, problem.body()
                if idempotency_key:
                    self.idempotency[idempotency_key] = IdempotencyRecord(
                        fingerprint=fp, status_code=status_code, body=body, created_at=isoformat(time.time())
                    )
                self.persist()
        if rule is not None and rule.mode == "accept_then_error":
            return injected_error(rule, operation, performed=True)
        if rule is not None and rule.mode == "accept_then_delay":
            await asyncio.sleep(rule.delay_ms / 1000)
        media_type = PROBLEM_JSON if status_code >= 400 else "application/json"
        headers = {REPLAYED_HEADER: "true"} if replayed else None
        return JSONResponse(body, status_code=status_code, media_type=media_type, headers=headers)


def add_control_routes(app: FastAPI, runtime: SandboxRuntime) -> None:
    """``/_control/faults`` (POST add, GET list, DELETE clear), ``/_control/webhooks``, ``/healthz``."""

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/_control/faults", status_code=201)
    async def add_fault(rule: FaultRule) -> dict[str, Any]:
        runtime.faults.add(rule)
        return {"faults": [r.model_dump() for r in runtime.faults.rules]}

    @app.get("/_control/faults")
    async def list_faults() -> dict[str, Any]:
        return {"faults": [r.model_dump() for r in runtime.faults.rules]}

    @app.delete("/_control/faults")
    async def clear_faults() -> dict[str, Any]:
        runtime.faults.clear()
        return {"faults": []}

    @app.get("/_control/webhooks")
    async def webhooks(event_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        return [
            d.model_dump()
            for d in runtime.dispatcher.deliveries.values()
            if (event_id is None or d.event_id == event_id) and (status is None or d.status == status)
        ]


# --------------------------------------------------------------------------------------------
# Command line


def base_arg_parser(prog: str, description: str, default_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default_port, help=f"HTTP port (default {default_port})")
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="JSON file that keeps the state across restarts (default: memory only)",
    )
    parser.add_argument(
        "--webhook-max-attempts",
        type=int,
        default=6,
        help="attempts per webhook before it is marked failed (default 6)",
    )
    parser.add_argument(
        "--webhook-backoff-ms",
        type=int,
        default=500,
        help="first retry delay, doubled on each retry, capped at 30 s (default 500)",
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return parser


def serve(app: FastAPI, *, host: str, port: int, log_level: str) -> None:
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level in ("debug", "info"),
        timeout_graceful_shutdown=2,
    )
