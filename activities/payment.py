"""Activities of the payment service, served on task queue ``payment`` by ``python worker.py payment``.

Money-moving activities call the provider FIRST, with the activity's idempotency key, and then write
the payment row, its ledger rows and the idempotency record in one transaction. A retry after a crash
in between replays the provider call (the provider answers the first result again) and writes once;
a retry after the commit is answered from the idempotency ledger without calling the provider.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.activity_support import business_errors, idempotent_write, read
from core.crypto import TokenCipher
from core.db import SessionFactory
from core.errors import IdempotencyKeyReused
from core.ledger import request_fingerprint
from core.settings import Settings
from services.payment import service
from services.payment.models import ledger
from services.payment.provider import (
    AuthorizationExpired,
    PaymentProvider,
    ProviderRequestError,
    PspSandboxProvider,
)
from services.payment.schemas import (
    CURRENCY,
    MAX_AMOUNT,
    AuthorizeResult,
    CaptureResult,
    OrderBalance,
    PaymentStatusResult,
    PaymentView,
    ProviderEvent,
    RefundResult,
    VoidResult,
    WebhookRecorded,
)

TASK_QUEUE = "payment"
R = TypeVar("R", bound=BaseModel)

IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255)]
Amount = Annotated[int, Field(gt=0, le=MAX_AMOUNT)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthorizeInput(_In):
    """Exactly one of ``psp_token_encrypted`` (a provider card token encrypted with ENCRYPTION_KEY, as
    the user service stores it), ``payment_method_id`` (a card saved with the payment service) and
    ``psp_token`` (plaintext). The first two are decrypted here only, so no usable token travels through
    workflow histories, which support staff read in the Web UI."""

    idempotency_key: IdempotencyKey
    payment_id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID
    amount: Amount
    currency: str = Field(pattern=CURRENCY)
    psp_token: str | None = Field(default=None, min_length=1, max_length=100)
    psp_token_encrypted: str | None = Field(default=None, min_length=1, max_length=1000)
    payment_method_id: uuid.UUID | None = None
    webhook_url: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _one_card(self) -> AuthorizeInput:
        given = [self.psp_token, self.psp_token_encrypted, self.payment_method_id]
        if sum(x is not None for x in given) != 1:
            raise ValueError("give exactly one of psp_token, psp_token_encrypted and payment_method_id")
        return self


class CaptureInput(_In):
    """``amount`` omitted: capture everything authorized."""

    idempotency_key: IdempotencyKey
    payment_id: uuid.UUID
    order_id: uuid.UUID
    amount: Amount | None = None


class VoidInput(_In):
    idempotency_key: IdempotencyKey
    payment_id: uuid.UUID
    order_id: uuid.UUID


class RefundInput(_In):
    idempotency_key: IdempotencyKey
    payment_id: uuid.UUID
    order_id: uuid.UUID
    amount: Amount
    reason: str = Field(min_length=1, max_length=2000)
    return_id: uuid.UUID | None = None


class RecordWebhookInput(ProviderEvent):
    """The provider event id is this write's idempotency key (``uq_payment_webhooks_event``)."""

    model_config = ConfigDict(extra="forbid")


class RefreshInput(_In):
    idempotency_key: IdempotencyKey
    payment_id: uuid.UUID
    order_id: uuid.UUID


class GetPaymentInput(_In):
    payment_id: uuid.UUID
    order_id: uuid.UUID | None = None


class BalanceInput(_In):
    order_id: uuid.UUID


@contextmanager
def _provider_errors() -> Iterator[None]:
    """A request the provider rejects as malformed is a bug here: retrying cannot help."""
    try:
        yield
    except ProviderRequestError as exc:
        raise ApplicationError(str(exc), exc.problem, type=type(exc).__name__, non_retryable=True) from exc


class PaymentActivities:
    """Adapts ``services.payment`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(
        self, sessions: SessionFactory, provider: PaymentProvider, cipher: TokenCipher | None = None
    ) -> None:
        self.sessions = sessions
        self.provider = provider
        self.cipher = cipher

    async def _replayed(self, key: str, operation: str, request: BaseModel, result_type: type[R]) -> R | None:
        """The recorded result of ``key``, checked before calling the provider at all."""
        async with self.sessions() as s, s.begin():
            row = (
                await s.execute(
                    select(ledger.c.operation, ledger.c.request_hash, ledger.c.result).where(
                        ledger.c.key == key
                    )
                )
            ).first()
        if row is None:
            return None
        if row.operation != operation or row.request_hash != request_fingerprint(request):
            raise IdempotencyKeyReused(
                f"idempotency key {key!r} was already used for a different {row.operation} request", key=key
            )
        return result_type.model_validate(row.result)

    async def _write(
        self,
        inp: BaseModel,
        key: str,
        operation: str,
        result_type: type[R],
        effect: Callable[[AsyncSession], Awaitable[R]],
    ) -> R:
        return await idempotent_write(
            self.sessions,
            ledger,
            key=key,
            operation=operation,
            request=inp,
            result_type=result_type,
            effect=effect,
        )

    @activity.defn(name="payment.authorize")
    async def authorize(self, inp: AuthorizeInput) -> AuthorizeResult:
        """authorized | requires_action (outcome later, by webhook) | declined (a result, recorded with
        a failed ledger row: the saga decides)."""
        with business_errors(), _provider_errors():
            if done := await self._replayed(inp.idempotency_key, "payment.authorize", inp, AuthorizeResult):
                return done
            async with self.sessions() as s, s.begin():
                await service.check_new_payment(s, inp.payment_id, inp.order_id)
                token = inp.psp_token
                if token is None:
                    if self.cipher is None:
                        raise RuntimeError("PaymentActivities needs a TokenCipher to use encrypted tokens")
                    if inp.psp_token_encrypted is not None:
                        token = self.cipher.decrypt(inp.psp_token_encrypted)
                    else:
                        assert inp.payment_method_id is not None
                        token = await service.payment_method_token(
                            s, self.cipher, inp.payment_method_id, inp.user_id
                        )
            attempt = await service.authorize_at_provider(
                self.provider,
                token=token,
                amount=inp.amount,
                currency=inp.currency,
                order_id=inp.order_id,
                idempotency_key=inp.idempotency_key,
                webhook_url=inp.webhook_url,
            )
        return await self._write(
            inp,
            inp.idempotency_key,
            "payment.authorize",
            AuthorizeResult,
            lambda s: service.record_authorization(
                s,
                payment_id=inp.payment_id,
                order_id=inp.order_id,
                user_id=inp.user_id,
                amount=inp.amount,
                currency=inp.currency,
                idempotency_key=inp.idempotency_key,
                attempt=attempt,
            ),
        )

    @activity.defn(name="payment.capture")
    async def capture(self, inp: CaptureInput) -> CaptureResult:
        with business_errors(), _provider_errors():
            if done := await self._replayed(inp.idempotency_key, "payment.capture", inp, CaptureResult):
                return done
            async with self.sessions() as s, s.begin():
                authorization_id, amount = await service.check_capture(
                    s, inp.payment_id, inp.order_id, inp.amount
                )
            try:
                auth = await self.provider.capture(
                    authorization_id, idempotency_key=inp.idempotency_key, amount=amount
                )
            except AuthorizationExpired:
                async with self.sessions() as s, s.begin():
                    await service.mark_expired(s, inp.payment_id, inp.order_id)
                raise
        return await self._write(
            inp,
            inp.idempotency_key,
            "payment.capture",
            CaptureResult,
            lambda s: service.record_capture(s, inp.payment_id, inp.order_id, auth, inp.idempotency_key),
        )

    @activity.defn(name="payment.void")
    async def void(self, inp: VoidInput) -> VoidResult:
        """The compensation of authorize. Nothing open (no such payment, declined, expired, voided
        already) is success with ``voided`` false. If the authorize step's outcome is unknown (it timed
        out), re-run ``payment.authorize`` with its key first: that replays, never authorizes twice."""
        with business_errors(), _provider_errors():
            if done := await self._replayed(inp.idempotency_key, "payment.void", inp, VoidResult):
                return done
            async with self.sessions() as s, s.begin():
                authorization_id = await service.check_void(s, inp.payment_id, inp.order_id)
            auth = (
                await service.void_at_provider(self.provider, authorization_id, inp.idempotency_key)
                if authorization_id
                else None
            )
        return await self._write(
            inp,
            inp.idempotency_key,
            "payment.void",
            VoidResult,
            lambda s: service.record_void(s, inp.payment_id, inp.order_id, auth, inp.idempotency_key),
        )

    @activity.defn(name="payment.refund")
    async def refund(self, inp: RefundInput) -> RefundResult:
        """Full or partial; never more than captured minus refunded (``RefundExceedsCaptured``)."""
        with business_errors(), _provider_errors():
            if done := await self._replayed(inp.idempotency_key, "payment.refund", inp, RefundResult):
                return done
            async with self.sessions() as s, s.begin():
                authorization_id = await service.check_refund(s, inp.payment_id, inp.order_id, inp.amount)
            provider_refund_id = await service.refund_at_provider(
                self.provider, authorization_id, inp.amount, inp.idempotency_key
            )
        return await self._write(
            inp,
            inp.idempotency_key,
            "payment.refund",
            RefundResult,
            lambda s: service.record_refund(
                s,
                payment_id=inp.payment_id,
                order_id=inp.order_id,
                amount=inp.amount,
                reason=inp.reason,
                return_id=inp.return_id,
                provider_refund_id=provider_refund_id,
                idempotency_key=inp.idempotency_key,
            ),
        )

    @activity.defn(name="payment.record_webhook")
    async def record_webhook(self, inp: RecordWebhookInput) -> WebhookRecorded:
        """Store a provider event (once per event id) and apply it: the outcome of a requires_action
        authorization, or an expiry. A redelivered event is ``duplicate`` and changes nothing."""
        with business_errors():
            async with self.sessions() as s, s.begin():
                return await service.record_webhook(s, ProviderEvent.model_validate(inp.model_dump()))

    @activity.defn(name="payment.refresh")
    async def refresh(self, inp: RefreshInput) -> PaymentStatusResult:
        """Ask the provider for an open authorization's status (a webhook may be late or lost)."""
        with business_errors(), _provider_errors():
            if done := await self._replayed(inp.idempotency_key, "payment.refresh", inp, PaymentStatusResult):
                return done
            async with self.sessions() as s, s.begin():
                authorization_id = await service.check_refresh(s, inp.payment_id, inp.order_id)
            auth = await self.provider.get(authorization_id) if authorization_id else None
        return await self._write(
            inp,
            inp.idempotency_key,
            "payment.refresh",
            PaymentStatusResult,
            lambda s: service.record_refresh(s, inp.payment_id, inp.order_id, auth),
        )

    @activity.defn(name="payment.get")
    async def get(self, inp: GetPaymentInput) -> PaymentView:
        return await read(self.sessions, lambda s: service.get_payment(s, inp.payment_id, inp.order_id))

    @activity.defn(name="payment.balance")
    async def balance(self, inp: BalanceInput) -> OrderBalance:
        return await read(self.sessions, lambda s: service.balance(s, inp.order_id))


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py payment`` registers (besides ``payment.ping``)."""
    acts = PaymentActivities(
        sessions,
        PspSandboxProvider(settings.psp_url),
        TokenCipher(settings.encryption_key.get_secret_value()),
    )
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
