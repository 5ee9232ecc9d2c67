"""SMTP sink: an aiosmtpd SMTP server that accepts and keeps every mail, plus a small HTTP API.

Both run on one event loop in one process (the SMTP listener is opened in the HTTP app's lifespan),
so no locks are needed between them.

HTTP:

* ``GET /messages?to=ADDR&message_id=ID`` -> list of stored messages (oldest first); ``to`` matches
  an envelope recipient or a ``To``/``Cc`` address, case-insensitively.
* ``GET /messages/{id}``, ``GET /messages/{id}/raw`` (the bytes as received), ``DELETE /messages``.
* ``POST /_control/faults`` ``{"mode": "tempfail" | "permfail", "count": N, "stage"?: "mail" | "rcpt" |
  "data"}``: the next N SMTP transactions are answered ``451`` / ``550`` at that command (default
  ``data``, the end of the message); nothing is stored for them. ``GET`` / ``DELETE`` as for the other
  sandboxes. ``GET /healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from sandboxes import Problem, install_problem_handlers, isoformat, new_id

Stage = Literal["mail", "rcpt", "data"]
REPLIES = {
    "tempfail": "451 4.3.0 Temporary local problem, try again later (sandbox fault)",
    "permfail": "550 5.7.1 Message rejected (sandbox fault)",
}


class SmtpFault(BaseModel):
    mode: Literal["tempfail", "permfail"]
    count: int = Field(default=1, ge=1, le=10_000)
    stage: Stage = "data"


class StoredMessage(BaseModel):
    id: str
    mail_from: str
    rcpt_tos: list[str]
    from_: str | None = Field(default=None, alias="from", serialization_alias="from")
    to: list[str]
    cc: list[str]
    subject: str | None
    message_id: str | None
    text: str | None
    html: str | None
    headers: list[tuple[str, str]]
    size: int
    received_at: str

    model_config = {"populate_by_name": True}

    def public(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


@dataclass
class SmtpSinkConfig:
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    max_messages: int = 1000


def _addresses(msg: EmailMessage, header: str) -> list[str]:
    return [addr for _, addr in getaddresses([str(v) for v in msg.get_all(header, [])]) if addr]


def _body(msg: EmailMessage, subtype: str) -> str | None:
    part = msg.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    content = part.get_content()
    return content.replace("\r\n", "\n") if isinstance(content, str) else None


def parse_message(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> StoredMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    from_ = msg.get("From")
    subject = msg.get("Subject")
    message_id = msg.get("Message-ID")
    return StoredMessage(
        id=new_id("msg"),
        mail_from=mail_from,
        rcpt_tos=list(rcpt_tos),
        from_=str(from_) if from_ is not None else None,
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        subject=str(subject) if subject is not None else None,
        message_id=str(message_id).strip() if message_id is not None else None,
        text=_body(msg, "plain"),
        html=_body(msg, "html"),
        headers=[(k, str(v)) for k, v in msg.items()],
        size=len(raw),
        received_at=isoformat(time.time()),
    )


class MailStore:
    def __init__(self, max_messages: int) -> None:
        self.messages: deque[StoredMessage] = deque(maxlen=max_messages)
        self.raw: dict[str, bytes] = {}
        self.faults: list[SmtpFault] = []

    def add(self, message: StoredMessage, raw: bytes) -> None:
        if self.messages.maxlen is not None and len(self.messages) == self.messages.maxlen:
            self.raw.pop(self.messages[0].id, None)
        self.messages.append(message)
        self.raw[message.id] = raw

    def clear(self) -> int:
        n = len(self.messages)
        self.messages.clear()
        self.raw.clear()
        return n

    def find(self, to: str | None, message_id: str | None) -> list[StoredMessage]:
        def matches(m: StoredMessage) -> bool:
            if to is not None:
                wanted = to.strip().lower()
                if wanted not in {a.lower() for a in (*m.rcpt_tos, *m.to, *m.cc)}:
                    return False
            return message_id is None or m.message_id == message_id.strip()

        return [m for m in self.messages if matches(m)]

    def take_fault(self, stage: Stage) -> str | None:
        for fault in self.faults:
            if fault.stage == stage:
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return REPLIES[fault.mode]
        return None


class SinkHandler:
    """aiosmtpd handler: accepts every sender and recipient, keeps every message."""

    def __init__(self, store: MailStore) -> None:
        self.store = store

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        reply = self.store.take_fault("mail")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.store.take_fault("rcpt")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self.store.take_fault("data")
        if reply:
            return reply
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        message = parse_message(raw, str(envelope.mail_from or ""), [str(r) for r in envelope.rcpt_tos])
        self.store.add(message, raw)
        return f"250 2.0.0 OK queued as {message.id}"


def create_app(config: SmtpSinkConfig) -> FastAPI:
    store = MailStore(config.max_messages)
    handler = SinkHandler(store)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="sandbox-smtp-sink", enable_SMTPUTF8=True),
            host=config.smtp_host,
            port=config.smtp_port,
        )
        try:
            yield
        finally:
            server.close()
            await server.wait_closed()

    app = FastAPI(title="sagashop SMTP sink", version="1", lifespan=lifespan)
    app.state.store = store
    install_problem_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/messages")
    async def list_messages(to: str | None = None, message_id: str | None = None) -> list[dict[str, Any]]:
        return [m.public() for m in store.find(to, message_id)]

    def get(message_id: str) -> StoredMessage:
        for m in store.messages:
            if m.id == message_id:
                return m
        raise Problem(404, "not_found", "Not found", f"no message {message_id!r}")

    @app.get("/messages/{message_id}")
    async def get_message(message_id: str) -> dict[str, Any]:
        return get(message_id).public()

    @app.get("/messages/{message_id}/raw")
    async def get_raw(message_id: str) -> PlainTextResponse:
        message = get(message_id)
        return PlainTextResponse(
            store.raw[message.id].decode("utf-8", "replace"), media_type="message/rfc822"
        )

    @app.delete("/messages")
    async def delete_messages() -> dict[str, int]:
        return {"deleted": store.clear()}

    @app.post("/_control/faults", status_code=201)
    async def add_fault(fault: SmtpFault) -> dict[str, Any]:
        store.faults.append(fault)
        return {"faults": [f.model_dump() for f in store.faults]}

    @app.get("/_control/faults")
    async def list_faults() -> dict[str, Any]:
        return {"faults": [f.model_dump() for f in store.faults]}

    @app.delete("/_control/faults")
    async def clear_faults() -> dict[str, Any]:
        store.faults.clear()
        return {"faults": []}

    return app
