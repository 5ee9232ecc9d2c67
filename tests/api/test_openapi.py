"""The OpenAPI document is complete, one test per operation: a summary, a typed success response,
error responses documented as ``application/problem+json`` (401 for an operation with a security
requirement, 403 for support and admin routes, 422 for one with input), request bodies with examples.
Against the running API: ``/docs`` serves, the served document is the same, and every support and
admin route answers 401 without a token and 403 to a shopper's token, as problem details."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from api.app import create_app
from core.db import SessionFactory
from core.settings import Settings
from tests.conftest import Stack
from tests.factories import Shopper, make_shopper

PROBLEM = "application/problem+json"
METHODS = ("get", "put", "post", "delete", "patch")
SCHEMA: dict[str, Any] = create_app(Settings()).openapi()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, item in SCHEMA["paths"].items()
    for method, operation in item.items()
    if method in METHODS
]
IDS = [f"{m} {p}" for m, p, _ in OPERATIONS]
ROLE_ROUTES = [(m, p) for m, p, _ in OPERATIONS if p.startswith(("/v1/support", "/v1/admin"))]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        resolved: dict[str, Any] = SCHEMA["components"]["schemas"][ref.rsplit("/", 1)[1]]
        return resolved
    return schema


def is_typed(schema: dict[str, Any]) -> bool:
    schema = resolve(schema)
    if schema.get("type") == "array":
        return is_typed(schema.get("items", {}))
    return bool(schema.get("properties") or schema.get("type") or schema.get("anyOf") or schema.get("enum"))


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_every_operation_is_documented(method: str, path: str, operation: dict[str, Any]) -> None:
    assert operation.get("summary"), "no summary"
    responses: dict[str, Any] = operation["responses"]
    successes = {status: r for status, r in responses.items() if status.startswith("2")}
    assert successes, "no success response"
    for status, response in successes.items():
        if status == "204":
            assert not response.get("content"), "204 with a body"
            continue
        content = response.get("content") or {}
        assert content, f"{status} has no content"
        for media_type, media in content.items():
            assert is_typed(media.get("schema", {})), f"{status} {media_type} is not typed"

    implied = set()
    if operation.get("security"):
        implied.add("401")
    if path.startswith(("/v1/support", "/v1/admin")):
        implied.add("403")
    if operation.get("parameters") or operation.get("requestBody"):
        implied.add("422")
    missing = implied - set(responses)
    assert not missing, f"undocumented error responses {sorted(missing)}"
    for status, response in responses.items():
        if status[0] not in "45" or (path == "/readyz" and status == "503"):
            continue
        content = response.get("content") or {}
        assert list(content) == [PROBLEM], f"{status} is not only {PROBLEM}: {list(content)}"
        assert content[PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}, status

    body = operation.get("requestBody")
    if body:
        for media_type, media in body["content"].items():
            schema = resolve(media.get("schema", {}))
            has_examples = media.get("example") or media.get("examples") or schema.get("examples")
            assert has_examples, f"request body {media_type} has no examples"


def test_problem_schema_is_the_rfc_9457_shape() -> None:
    problem = SCHEMA["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status"}
    assert {"detail", "instance", "errors"} <= set(problem["properties"])
    assert "HTTPValidationError" not in SCHEMA["components"]["schemas"]  # FastAPI's shape is never sent


def test_support_and_admin_routes_are_tagged_and_described() -> None:
    tags = {t["name"]: t for t in SCHEMA.get("tags", [])}
    for method, path, operation in OPERATIONS:
        if path.startswith(("/v1/support", "/v1/admin")):
            assert operation.get("tags"), f"{method} {path} has no tag"
            for tag in operation["tags"]:
                assert tags.get(tag, {}).get("description"), f"tag {tag!r} has no description"


# -- against the running API ---------------------------------------------------------------------


def concrete(path: str) -> str:
    """A path with its parameters filled with well-formed values (the role check comes first anyway)."""
    values = {"code": "SPRING15", "key": "order_confirmed", "locale": "en", "workflow_id": "checkout-x"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), str(uuid.uuid4())), path)


@pytest.fixture(scope="module")
async def shopper(stack: Stack, sessions: dict[str, SessionFactory]) -> Shopper:
    return await make_shopper(sessions, stack.settings)


async def test_docs_and_the_served_document(stack: Stack) -> None:
    async with stack.http() as http:
        docs = await http.get("/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text.lower()
        assert "/openapi.json" in docs.text
        served = (await http.get("/openapi.json")).json()
    assert set(served["paths"]) == set(SCHEMA["paths"])
    assert served["components"]["schemas"]["Problem"] == SCHEMA["components"]["schemas"]["Problem"]


async def test_support_and_admin_routes_refuse_anonymous_and_shoppers(stack: Stack, shopper: Shopper) -> None:
    assert len(ROLE_ROUTES) >= 40
    async with stack.http() as http:
        for method, path in ROLE_ROUTES:
            url = concrete(path)
            body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
            anonymous = await http.request(method, url, json=body)
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            assert anonymous.headers["content-type"].startswith(PROBLEM)
            assert anonymous.json()["type"] == "/problems/not-authenticated"
            as_shopper = await http.request(method, url, json=body, headers=shopper.headers)
            assert as_shopper.status_code == 403, (method, path, as_shopper.text)
            assert as_shopper.headers["content-type"].startswith(PROBLEM)
            assert as_shopper.json()["type"] == "/problems/forbidden"


async def test_method_not_allowed_lists_every_method_of_the_path(stack: Stack, shopper: Shopper) -> None:
    async with stack.http() as http:
        response = await http.request("OPTIONS", "/v1/admin/shipping/zones", headers=shopper.headers)
    assert response.status_code == 405 and response.headers["content-type"].startswith(PROBLEM)
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST"}


async def test_a_value_the_database_refuses_is_a_422_problem() -> None:
    """The safety net under field rules: a database data error (SQLSTATE 22) is bad input, not a 500."""
    import httpx
    from fastapi import FastAPI
    from sqlalchemy.exc import DataError

    from api import problems

    app = FastAPI()
    problems.install(app)

    @app.get("/boom", summary="raises what asyncpg raises for NUL in text")
    async def boom() -> None:
        raise DataError("SELECT ...", {}, Exception('invalid byte sequence for encoding "UTF8": 0x00'))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/boom")
    assert response.status_code == 422 and response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["type"] == "/problems/invalid-value"
    assert "SELECT" not in response.text  # no SQL leaks
