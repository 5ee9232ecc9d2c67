"""Sending email over SMTP (aiosmtplib).

SMTP has no idempotency key, so the mailer derives the ``Message-ID`` from the caller's key
(:func:`message_id_for`): a retried send produces a message with the *same* Message-ID, which
receivers (and the SMTP sink's ``GET /messages?message_id=``) recognise as a duplicate.

Errors: :class:`MailTemporaryFailure` (4xx replies, connection errors, timeouts - retry later) and
:class:`MailPermanentFailure` (5xx replies - retrying the same mail cannot succeed). Both derive from
:class:`MailError`, whose ``retryable`` says which kind it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import ClassVar

import aiosmtplib
from pydantic import BaseModel

DEFAULT_MESSAGE_ID_DOMAIN = "sagashop.local"


class SentMail(BaseModel):
    message_id: str
    recipients: list[str]
    # Recipients the server refused while accepting others: address -> SMTP reply.
    refused: dict[str, str] = {}
    response: str


class MailError(Exception):
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class MailTemporaryFailure(MailError):
    """4xx reply, connection refused or dropped, timeout: try again later."""

    retryable = True


class MailPermanentFailure(MailError):
    """5xx reply: the server will not take this mail; retrying the same mail cannot succeed."""

    retryable = False


def message_id_for(idempotency_key: str, domain: str = DEFAULT_MESSAGE_ID_DOMAIN) -> str:
    """The Message-ID of the mail sent under ``idempotency_key``: the same key gives the same id."""
    if not idempotency_key:
        raise ValueError("idempotency_key must not be empty")
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]
    return f"<{digest}@{domain}>"


def _classify(code: int, message: str) -> MailError:
    if 400 <= code < 500:
        return MailTemporaryFailure(message, code=code)
    if 500 <= code < 600:
        return MailPermanentFailure(message, code=code)
    return MailTemporaryFailure(message, code=code)


class Mailer:
    """Sends one email per :meth:`send` call to an SMTP server (the SMTP sink in development)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        timeout: float = 10.0,
        message_id_domain: str = DEFAULT_MESSAGE_ID_DOMAIN,
        use_tls: bool = False,
        start_tls: bool | None = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout = timeout
        self.message_id_domain = message_id_domain
        self.use_tls = use_tls
        self.start_tls = start_tls
        self.username = username
        self.password = password

    def build(
        self,
        *,
        to: Sequence[str],
        subject: str,
        text: str,
        idempotency_key: str,
        html: str | None = None,
        reply_to: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(to)
        msg["Subject"] = subject
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = message_id_for(idempotency_key, self.message_id_domain)
        if reply_to:
            msg["Reply-To"] = reply_to
        for name, value in (headers or {}).items():
            msg[name] = value
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        return msg

    async def send(
        self,
        *,
        to: str | Sequence[str],
        subject: str,
        text: str,
        idempotency_key: str,
        html: str | None = None,
        reply_to: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> SentMail:
        recipients = [to] if isinstance(to, str) else list(to)
        if not recipients:
            raise ValueError("at least one recipient is needed")
        msg = self.build(
            to=recipients,
            subject=subject,
            text=text,
            idempotency_key=idempotency_key,
            html=html,
            reply_to=reply_to,
            headers=headers,
        )
        where = f"{self.host}:{self.port}"
        try:
            errors, response = await aiosmtplib.send(
                msg,
                hostname=self.host,
                port=self.port,
                timeout=self.timeout,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                username=self.username,
                password=self.password,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if any(400 <= c < 500 for c in codes):
                raise MailTemporaryFailure(
                    f"{where} refused the recipients for now: {detail}", code=min(codes)
                ) from exc
            raise MailPermanentFailure(
                f"{where} refused every recipient: {detail}", code=max(codes) if codes else None
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _classify(exc.code, f"{where} answered {exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPNotSupported as exc:
            # The server lacks something this mailer is configured to need (STARTTLS, AUTH).
            raise MailPermanentFailure(f"{where} cannot take mail as configured: {exc}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Connection refused or dropped, timeouts, HELO trouble: the mail was not taken.
            raise MailTemporaryFailure(f"could not send mail through {where}: {exc!r}") from exc
        return SentMail(
            message_id=str(msg["Message-ID"]),
            recipients=recipients,
            refused={addr: f"{r.code} {r.message}" for addr, r in errors.items()},
            response=response,
        )
