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


def install(app: FastAPI) -> None:
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
        return problem_response(
            exc.status_code,
            str(exc.detail) if exc.status_code != 404 else "Not found",
            type_name=name,
            detail=str(exc.detail),
            request=request,
            headers=getattr(exc, "headers", None),
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
