"""Request body size limit: a body larger than the limit is refused with 413 before any handler runs;
strict JSON bodies (a dependency): the body's values must have the types the OpenAPI document states."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM_JSON, problem_type


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "type": problem_type("PayloadTooLarge"),
                "title": "Request body too large",
                "status": 413,
                "detail": f"the body exceeds {self.max_bytes} bytes",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


# -- strict JSON bodies ----------------------------------------------------------------------------
# FastAPI validates a decoded JSON body in pydantic's lax Python mode, which converts 0 to false, "5"
# to 5 and 0 to 1970-01-01: values the OpenAPI document says are invalid. This dependency validates
# the raw body once more in strict JSON mode (strings stay valid for UUIDs, dates and enums, which is
# what JSON carries). Declare it AFTER the caller's authentication, so an anonymous caller still gets
# 401 and not a validation answer.
_ADAPTERS: dict[int, TypeAdapter[Any]] = {}


async def strict_json_body(request: Request) -> None:
    route = request.scope.get("route")
    field = getattr(route, "body_field", None)
    if field is None or "json" not in request.headers.get("content-type", ""):
        return
    body = await request.body()
    if not body:
        return
    try:
        value = json.loads(body)
    except ValueError:
        return  # malformed JSON: FastAPI answers that itself
    unstorable = list(_unstorable_strings(value, ("body",)))
    if unstorable:
        raise RequestValidationError(
            [
                {
                    "loc": loc,
                    "msg": "text must not contain NUL characters or lone surrogates",
                    "type": "value_error",
                }
                for loc in unstorable
            ]
        )
    adapter = _ADAPTERS.get(id(route))
    if adapter is None:
        adapter = _ADAPTERS[id(route)] = TypeAdapter(field.field_info.annotation)
    try:
        adapter.validate_json(json.dumps(_integral_floats_as_ints(value)), strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from exc


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable_strings(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    """Where the body has text PostgreSQL cannot store (NUL) or UTF-8 cannot encode (lone surrogates)."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            yield loc
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _unstorable_strings(item, (*loc, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            if _UNSTORABLE.search(key):
                yield (*loc, key)
            yield from _unstorable_strings(item, (*loc, key))


def _integral_floats_as_ints(value: Any) -> Any:
    """JSON Schema counts 3.0 as an integer (pydantic's strict mode would not)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    return value
