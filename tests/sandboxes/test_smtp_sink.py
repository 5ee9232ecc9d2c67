"""The SMTP sink, exercised through ``Mailer`` (SMTP) and the sink's HTTP API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.notification.mailer import (
    Mailer,
    MailPermanentFailure,
    MailTemporaryFailure,
    message_id_for,
)
from tests.sandboxes.conftest import SmtpSink, free_port


@pytest.fixture
async def sink(smtp_sink: SmtpSink) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=smtp_sink.http_url) as http:
        yield http


def address() -> str:
    return f"shopper-{uuid.uuid4().hex[:10]}@example.test"


async def inbox(sink: httpx.AsyncClient, to: str) -> list[dict[str, Any]]:
    response = await sink.get("/messages", params={"to": to})
    response.raise_for_status()
    messages: list[dict[str, Any]] = response.json()
    return messages


async def test_sent_mail_is_stored_and_readable(mailer: Mailer, sink: httpx.AsyncClient) -> None:
    to = address()
    sent = await mailer.send(
        to=to,
        subject="Your order ORD-1 is confirmed",
        text="Thank you for your order.",
        html="<p>Thank you for your <b>order</b>.</p>",
        idempotency_key="checkout-ORD-1:notify",
    )
    assert sent.message_id == message_id_for("checkout-ORD-1:notify") and sent.recipients == [to]
    [message] = await inbox(sink, to.upper())  # addresses match case-insensitively
    assert message["from"] == "shop@sagashop.test" and message["to"] == [to] and message["rcpt_tos"] == [to]
    assert message["subject"] == "Your order ORD-1 is confirmed"
    assert message["text"].strip() == "Thank you for your order."
    assert message["html"].strip() == "<p>Thank you for your <b>order</b>.</p>"
    assert message["message_id"] == sent.message_id
    assert ("Message-ID", sent.message_id) in [tuple(h) for h in message["headers"]]
    single = await sink.get(f"/messages/{message['id']}")
    assert single.json() == message
    raw = await sink.get(f"/messages/{message['id']}/raw")
    assert "Subject: Your order ORD-1 is confirmed" in raw.text
    assert (await sink.get("/messages/msg_nope")).status_code == 404


async def test_same_idempotency_key_gives_the_same_message_id(
    mailer: Mailer, sink: httpx.AsyncClient
) -> None:
    to, k = address(), f"wf-{uuid.uuid4().hex}:notify"
    first = await mailer.send(to=to, subject="Shipped", text="On its way", idempotency_key=k)
    second = await mailer.send(to=to, subject="Shipped", text="On its way", idempotency_key=k)
    other = await mailer.send(to=to, subject="Shipped", text="On its way", idempotency_key=k + "-2")
    assert first.message_id == second.message_id != other.message_id
    duplicates = (await sink.get("/messages", params={"message_id": first.message_id})).json()
    assert len(duplicates) == 2  # the sink saw the retry, and can tell it is the same mail
    assert len(await inbox(sink, to)) == 3


async def test_tempfail_raises_retryable_error_and_stores_nothing(
    mailer: Mailer, sink: httpx.AsyncClient
) -> None:
    to = address()
    (await sink.post("/_control/faults", json={"mode": "tempfail", "count": 1})).raise_for_status()
    with pytest.raises(MailTemporaryFailure) as exc:
        await mailer.send(to=to, subject="Hi", text="x", idempotency_key="k-temp")
    assert exc.value.code == 451 and exc.value.retryable
    assert await inbox(sink, to) == []
    await mailer.send(to=to, subject="Hi", text="x", idempotency_key="k-temp")  # the retry goes through
    assert len(await inbox(sink, to)) == 1


async def test_tempfail_at_rcpt_is_retryable(mailer: Mailer, sink: httpx.AsyncClient) -> None:
    to = address()
    (await sink.post("/_control/faults", json={"mode": "tempfail", "stage": "rcpt"})).raise_for_status()
    with pytest.raises(MailTemporaryFailure) as exc:
        await mailer.send(to=to, subject="Hi", text="x", idempotency_key="k-rcpt")
    assert exc.value.code == 451
    assert await inbox(sink, to) == []


async def test_permfail_raises_permanent_error(mailer: Mailer, sink: httpx.AsyncClient) -> None:
    to = address()
    (await sink.post("/_control/faults", json={"mode": "permfail", "count": 2})).raise_for_status()
    for _ in range(2):
        with pytest.raises(MailPermanentFailure) as exc:
            await mailer.send(to=to, subject="Hi", text="x", idempotency_key="k-perm")
        assert exc.value.code == 550 and not exc.value.retryable
    assert await inbox(sink, to) == []
    await mailer.send(to=to, subject="Hi", text="x", idempotency_key="k-perm")
    assert len(await inbox(sink, to)) == 1


async def test_unreachable_server_is_a_temporary_failure() -> None:
    nowhere = Mailer("127.0.0.1", free_port(), sender="shop@sagashop.test", timeout=2.0)
    with pytest.raises(MailTemporaryFailure):
        await nowhere.send(to=address(), subject="Hi", text="x", idempotency_key="k")


async def test_delete_messages_empties_the_sink(mailer: Mailer, sink: httpx.AsyncClient) -> None:
    to = address()
    await mailer.send(to=to, subject="Hi", text="x", idempotency_key="k-del")
    deleted = (await sink.delete("/messages")).json()["deleted"]
    assert deleted >= 1
    assert (await sink.get("/messages")).json() == []


def test_message_id_is_derived_from_the_key() -> None:
    assert message_id_for("a:b") == message_id_for("a:b")
    assert message_id_for("a:b") != message_id_for("a:c")
    assert message_id_for("a:b", "mail.example").endswith("@mail.example>")
    assert message_id_for("a:b").startswith("<")
    with pytest.raises(ValueError):
        message_id_for("")
