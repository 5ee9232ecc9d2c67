"""Activities of the notification service, served on task queue ``notification`` by ``python worker.py notification``.

``notification.send`` is exactly-once-ish on top of at-least-once SMTP:

* the mail's Message-ID is derived from the idempotency key (``Mailer``), so a resend after a crash
  between the SMTP answer and the commit is recognisable as the same message;
* the success is committed together with the ledger row: a retried activity after that sends nothing;
* a temporary SMTP failure logs the attempt in its own committed transaction and raises a
  *retryable* ``MailTemporaryFailure``; a permanent one marks the notification failed and raises a
  non-retryable ``MailPermanentFailure``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.activity_support import business_errors, idempotent_write, read
from core.crypto import TokenCipher
from core.db import SessionFactory
from core.ledger import run_once
from core.settings import Settings
from services.notification import repository as repo
from services.notification import service
from services.notification.mailer import Mailer, MailError
from services.notification.models import AttemptStatus, NotificationStatus, ledger
from services.notification.schemas import (
    EMAIL_PATTERN,
    LOCALE_PATTERN,
    TEMPLATE_KEY_PATTERN,
    PartitionsEnsured,
)

TASK_QUEUE = "notification"
SENDER = "sagashop <no-reply@sagashop.local>"
OPERATION = "notification.send"


class SendInput(BaseModel):
    idempotency_key: str = Field(min_length=1, max_length=255, description="<workflow id>:<step>")
    user_id: uuid.UUID | None = None
    recipient: str = Field(max_length=320, pattern=EMAIL_PATTERN)
    event_type: str = Field(min_length=1, max_length=100, description="e.g. order.shipped")
    template_key: str = Field(pattern=TEMPLATE_KEY_PATTERN)
    locale: str = Field(default="en", pattern=LOCALE_PATTERN)
    context: dict[str, Any] = Field(default_factory=dict)
    # Template variables that must not be readable in workflow histories or stored rows (one-time
    # links): encrypted with ENCRYPTION_KEY by the service that made them, decrypted here for the mail.
    secret_context: dict[str, str] = Field(default_factory=dict)


class SendResult(BaseModel):
    notification_id: uuid.UUID
    status: Literal["sent", "suppressed"]
    message_id: str | None = None


class EnsurePartitionsInput(BaseModel):
    months_ahead: int = Field(default=3, ge=0, le=24)


class EnsurePartitionsResult(PartitionsEnsured):
    """created: partitions made by this call; existing: all of them afterwards."""


class NotificationActivities:
    """Adapts ``services.notification`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(
        self,
        sessions: SessionFactory,
        mailer: Mailer,
        *,
        retention_months: int = 0,
        cipher: TokenCipher | None = None,
    ) -> None:
        self.sessions = sessions
        self.mailer = mailer
        self.cipher = cipher  # for secret_context
        self.retention_months = retention_months  # NOTIFICATION_RETENTION_MONTHS; 0: keep all

    @activity.defn(name="notification.send")
    async def send(self, inp: SendInput) -> SendResult:
        with business_errors():
            async with self.sessions() as s, s.begin():
                done = await repo.peek_ledger(
                    s, key=inp.idempotency_key, operation=OPERATION, request=inp, result_type=SendResult
                )
                if done is not None:
                    return done
                prepared = await service.prepare(
                    s,
                    idempotency_key=inp.idempotency_key,
                    user_id=inp.user_id,
                    recipient=inp.recipient,
                    event_type=inp.event_type,
                    template_key=inp.template_key,
                    locale=inp.locale,
                    context=inp.model_dump(mode="json")["context"],
                    secret_context=self._decrypted(inp.secret_context),
                )
                notification = prepared.notification
                if notification.status in (NotificationStatus.SUPPRESSED, NotificationStatus.SENT):
                    settled = SendResult(
                        notification_id=notification.id,
                        status="suppressed"
                        if notification.status == NotificationStatus.SUPPRESSED
                        else "sent",
                        message_id=notification.message_id,
                    )

                    async def record() -> SendResult:
                        return settled

                    return await run_once(
                        s,
                        ledger,
                        key=inp.idempotency_key,
                        operation=OPERATION,
                        request=inp,
                        result_type=SendResult,
                        effect=record,
                    )

        rendered = prepared.rendered
        try:
            sent = await self.mailer.send(
                to=inp.recipient,
                subject=rendered.subject,
                text=rendered.text,
                html=rendered.html,
                idempotency_key=inp.idempotency_key,
                headers={"X-Sagashop-Notification": str(notification.id), "X-Sagashop-Event": inp.event_type},
            )
        except MailError as exc:
            async with self.sessions() as s, s.begin():
                await service.record_attempt(
                    s,
                    notification.id,
                    status=AttemptStatus.TEMPFAIL if exc.retryable else AttemptStatus.PERMFAIL,
                    smtp_response=str(exc.code) if exc.code is not None else None,
                    error=str(exc),
                )
            raise ApplicationError(
                str(exc),
                {"notification_id": str(notification.id), "smtp_code": exc.code},
                type=type(exc).__name__,
                non_retryable=not exc.retryable,
            ) from exc

        async def effect(s: AsyncSession) -> SendResult:
            await service.record_attempt(
                s,
                notification.id,
                status=AttemptStatus.SENT,
                smtp_response=sent.response,
                message_id=sent.message_id,
            )
            return SendResult(notification_id=notification.id, status="sent", message_id=sent.message_id)

        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation=OPERATION,
            request=inp,
            result_type=SendResult,
            effect=effect,
        )

    def _decrypted(self, secrets: dict[str, str]) -> dict[str, str]:
        if secrets and self.cipher is None:
            raise RuntimeError("NotificationActivities needs a TokenCipher for secret_context")
        return {name: self.cipher.decrypt(value) for name, value in secrets.items()} if self.cipher else {}

    @activity.defn(name="notification.ensure_partitions")
    async def ensure_partitions(self, inp: EnsurePartitionsInput) -> EnsurePartitionsResult:
        """Monthly partitions of ``notifications`` from this month to ``months_ahead`` (idempotent DDL);
        those older than the retention are dropped with their delivery logs."""
        today = datetime.now(UTC).date()
        result = await read(
            self.sessions,
            lambda s: service.ensure_partitions(s, today, inp.months_ahead, self.retention_months),
        )
        return EnsurePartitionsResult.model_validate(result.model_dump())


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py notification`` registers (besides ``notification.ping``)."""
    acts = NotificationActivities(
        sessions,
        Mailer(settings.smtp_host, settings.smtp_port, sender=SENDER),
        retention_months=settings.notification_retention_months,
        cipher=TokenCipher.from_settings(settings),
    )
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
