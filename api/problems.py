"""RFC 9457 problem details for every error the API returns (``application/problem+json``).

Every business refusal is a ``core.errors.BusinessError`` subclass; its class name gives the stable
``type`` (``/problems/out-of-stock`` for ``OutOfStock``), its ``status`` the HTTP status.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import BusinessError

log = logging.getLogger("api")
PROBLEM_JSON = "application/problem+json"


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    type: str = Field(examples=["/problems/out-of-stock"])
    title: str = Field(examples=["Out of stock"])
    status: int = Field(examples=[409])
    detail: str | None = Field(default=None, examples=["only 2 left of variant 5f0c..."])
    instance: str | None = None
    errors: list[FieldError] | None = None


def problem_type(name: str) -> str:
    return "/problems/" + re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower().replace("_", "-")


def problem_response(
    status: int,
    title: str,
    *,
    type_name: str,
    detail: str | None = None,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": problem_type(type_name), "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if request is not None:
        body["instance"] = request.url.path
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# Error responses every route documents in OpenAPI.
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Bad request",
        401: "Not authenticated",
        403: "Not allowed for this role",
        404: "Not found",
        409: "Refused by a business rule or a conflicting state",
        413: "Request body too large",
        422: "Invalid input: field errors, nothing written",
        429: "Too many requests (see Retry-After)",
        503: "A dependency is unavailable",
    }
    return {
        s: {"model": Problem, "description": descriptions.get(s, "Error"), "content": {PROBLEM_JSON: {}}}
        for s in statuses
    }


_DESCRIPTIONS = {
    400: "The body could not be parsed",
    401: "Not authenticated",
    413: "Request body too large",
    422: "Invalid input: field errors, nothing written",
}


def _problem_content() -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document say what the handlers below do, for every operation: each error
    response is ``application/problem+json`` with the ``Problem`` schema (FastAPI files a response
    ``model`` under ``application/json``, and adds its own 422 shape); an operation with a security
    requirement can answer 401, one with parameters or a body 422, one with a body 413."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            implied = []
            if operation.get("security"):
                implied.append(401)
            if operation.get("parameters") or operation.get("requestBody"):
                implied.append(422)
            if operation.get("requestBody"):
                implied += [400, 413]
            for code in implied:
                responses.setdefault(str(code), {"description": _DESCRIPTIONS[code]})
            for status, response in responses.items():
                content = response.get("content") or {}
                if status[:1] not in ("4", "5") or (content and not _is_problem(content)):
                    continue  # a success, or a route's own error document (/readyz's 503)
                response["content"] = _problem_content()
                if response.get("description") == "Validation Error":
                    response["description"] = _DESCRIPTIONS[422]
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in _problem_schemas().items():
        components.setdefault(name, definition)
    for unused in ("HTTPValidationError", "ValidationError"):
        if not _referenced(schema, unused):
            components.pop(unused, None)
    return schema


def _is_problem(content: dict[str, Any]) -> bool:
    """Documented as a problem already, or as FastAPI's validation error (our handler answers a problem)."""
    refs = {media.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1] for media in content.values()}
    return PROBLEM_JSON in content or bool(refs & {"Problem", "HTTPValidationError"})


def _problem_schemas() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    return {**definitions, "Problem": schema}


def _referenced(schema: dict[str, Any], name: str) -> bool:
    import json

    paths = json.dumps(schema.get("paths", {}))
    others = json.dumps(
        {k: v for k, v in schema.get("components", {}).get("schemas", {}).items() if k != name}
    )
    ref = f'"#/components/schemas/{name}"'
    return ref in paths or ref in others


def _allowed_methods(request: Request) -> list[str] | None:
    """The methods the OpenAPI document gives the path of the route that answered (None: unknown)."""
    route = request.scope.get("route")
    path = getattr(route, "path_format", None)
    item = request.app.openapi().get("paths", {}).get(path) if path else None
    if not item:
        return None
    methods = {m.upper() for m in item if m in ("get", "put", "post", "delete", "patch", "options")}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install(app: FastAPI) -> None:
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(build_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(BusinessError)
    async def business(request: Request, exc: BusinessError) -> JSONResponse:
        headers = None
        retry_after = exc.context.get("retry_after_seconds")
        if retry_after is not None:
            headers = {"Retry-After": str(int(retry_after))}
        return problem_response(
            exc.status, exc.title, type_name=exc.type, detail=exc.detail, request=request, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
                "msg": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        return problem_response(
            422,
            "Invalid request",
            type_name="ValidationError",
            detail="the request has invalid fields; nothing was written",
            request=request,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {
            401: "NotAuthenticated",
            403: "Forbidden",
            404: "NotFound",
            405: "MethodNotAllowed",
            413: "PayloadTooLarge",
            429: "TooManyRequests",
        }
        name = titles.get(exc.status_code, f"Http{exc.status_code}")
        headers = getattr(exc, "headers", None)
        allowed = _allowed_methods(request) if exc.status_code == 405 else None
        if allowed:  # every method of the path, not only those of the one route that answered
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        return problem_response(
            exc.status_code,
            str(exc.detail) if exc.status_code != 404 else "Not found",
            type_name=name,
            detail=str(exc.detail),
            request=request,
            headers=headers,
        )

    @app.exception_handler(DataError)
    async def unstorable(request: Request, exc: DataError) -> JSONResponse:
        # SQLSTATE class 22 (a value the database cannot take: NUL in text, out-of-range numbers, ...):
        # bad input that no field rule caught; the transaction rolled back, so nothing was written.
        log.warning("data error on %s %s: %s", request.method, request.url.path, exc.orig)
        return problem_response(
            422,
            "Invalid request",
            type_name="InvalidValue",
            detail="a value in the request cannot be stored or compared; nothing was written",
            request=request,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "Internal error",
            type_name="InternalError",
            detail="an unexpected error occurred; it has been logged",
            request=request,
        )
