"""Reading the running platform's state in tests: waiting for a condition, mails in the SMTP sink,
stock levels, the payment ledger. Each reads the owning service's database or sandbox directly,
never through the code under test. Data is made by ``tests/factories.py``."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import text

from core.db import SessionFactory
from services.product import service as product_service
from tests.conftest import Stack
from tests.factories import StockedVariant


async def eventually(
    check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 30, poll_s: float = 0.25
) -> Any:
    """Poll ``check()`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(poll_s)
    raise AssertionError(f"never: {what} (last: {last!r})")


async def mails(stack: Stack, to: str) -> list[dict[str, Any]]:
    """Every mail the SMTP sink holds for ``to``."""
    async with httpx.AsyncClient(base_url=stack.settings.mail_sink_url, timeout=10) as sink:
        response = await sink.get("/messages", params={"to": to})
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found


async def mail_with(stack: Stack, to: str, subject_part: str, timeout_s: float = 30) -> dict[str, Any]:
    """The first mail to ``to`` whose subject contains ``subject_part``, waiting for it."""

    async def check() -> dict[str, Any] | None:
        return next((m for m in await mails(stack, to) if subject_part in (m["subject"] or "")), None)

    found: dict[str, Any] = await eventually(check, f"a mail to {to} about {subject_part!r}", timeout_s)
    return found


async def stock(sessions: dict[str, SessionFactory], variant: StockedVariant) -> tuple[int, int]:
    """(on hand, reserved) of a variant."""
    async with sessions["product"]() as s:
        level = (await product_service.stock_of(s, [variant.variant_id]))[0]
    return level.on_hand, level.reserved


async def ledger_rows(sessions: dict[str, SessionFactory], order_id: str) -> list[tuple[str, str, int]]:
    """The payment ledger of an order: (type, status, amount), oldest first."""
    async with sessions["payment"]() as s:
        rows = await s.execute(
            text(
                "SELECT type, status, amount FROM payment_transactions WHERE order_id = :o ORDER BY created_at"
            ),
            {"o": uuid.UUID(order_id)},
        )
        return [(r[0], r[1], r[2]) for r in rows]


async def history_text(stack: Stack, workflow_id: str) -> str:
    """A workflow's history as JSON, followed by every payload decoded (payloads are base64 in the
    JSON): what anyone with the Web UI can read of it."""
    raw = (await stack.client.get_workflow_handle(workflow_id).fetch_history()).to_json()
    decoded: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and isinstance(node.get("metadata"), dict):
                decoded.append(base64.b64decode(node["data"]).decode(errors="replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(raw))
    assert decoded, f"no payloads in the history of {workflow_id}"
    return raw + "\n" + "\n".join(decoded)
