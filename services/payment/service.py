"""Rules of the payment service. Never commits: the caller owns the transaction.

Every operation that moves money has three parts, called by the activity in this order:

1. ``check_*`` (a short read): refuse what the rules forbid before bothering the provider;
2. the provider call (``*_at_provider``), with the operation's idempotency key: safe to repeat, the
   provider returns the first answer again;
3. ``record_*``: the payment row, the ledger row(s) and the idempotency ledger in ONE transaction,
   with the payment row locked (FOR UPDATE).

A retry after a crash between 2 and 3 replays the provider call (same answer) and records it once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto import TokenCipher
from services.payment import repository as repo
from services.payment.errors import (
    CaptureExceedsAuthorized,
    InvalidPaymentState,
    PaymentAlreadyExists,
    PaymentMethodNotFound,
    PaymentNotFound,
    RefundExceedsCaptured,
)
from services.payment.models import (
    Payment,
    PaymentStatus,
    RefundStatus,
    TransactionStatus,
    TransactionType,
)
from services.payment.provider import (
    Authorization,
    CardToken,
    PaymentDeclined,
    PaymentOperationRefused,
    PaymentProvider,
)
from services.payment.schemas import (
    AuthorizationAttempt,
    AuthorizeResult,
    CaptureResult,
    OrderBalance,
    PaymentBalance,
    PaymentStatusResult,
    PaymentView,
    ProviderEvent,
    RefundResult,
    RefundView,
    SavedPaymentMethod,
    TransactionView,
    VoidResult,
    WebhookRecorded,
)

P = PaymentStatus
PROVIDER = "psp_sandbox"
CAPTURABLE = frozenset({P.AUTHORIZED})
VOIDABLE = frozenset({P.AUTHORIZED, P.REQUIRES_ACTION})
REFUNDABLE = frozenset({P.CAPTURED, P.PARTIALLY_CAPTURED, P.PARTIALLY_REFUNDED, P.REFUNDED})
NOTHING_OPEN = frozenset({P.FAILED, P.EXPIRED, P.VOIDED})


async def _payment(
    session: AsyncSession, payment_id: uuid.UUID, order_id: uuid.UUID | None, *, for_update: bool = False
) -> Payment:
    payment = await repo.get_payment(session, payment_id, order_id, for_update=for_update)
    if payment is None:
        raise PaymentNotFound(f"no payment {payment_id}", payment_id=str(payment_id))
    return payment


def _refuse_state(payment: Payment, action: str) -> InvalidPaymentState:
    return InvalidPaymentState(
        f"payment {payment.id} is {payment.status}; it cannot be {action}",
        payment_id=str(payment.id),
        status=payment.status,
    )


# -- authorize -----------------------------------------------------------------------------------------


async def check_new_payment(session: AsyncSession, payment_id: uuid.UUID, order_id: uuid.UUID) -> None:
    if await repo.get_payment(session, payment_id, order_id) is not None:
        raise PaymentAlreadyExists(f"payment {payment_id} exists already", payment_id=str(payment_id))


async def authorize_at_provider(
    provider: PaymentProvider,
    *,
    token: str,
    amount: int,
    currency: str,
    order_id: uuid.UUID,
    idempotency_key: str,
    webhook_url: str | None,
) -> AuthorizationAttempt:
    """The provider's answer; a decline is an answer (``status`` declined), not an exception."""
    try:
        auth = await provider.authorize(
            token=token,
            amount=amount,
            currency=currency,
            reference=str(order_id),
            idempotency_key=idempotency_key,
            webhook_url=webhook_url,
        )
    except PaymentDeclined as declined:
        return AuthorizationAttempt(
            status="declined", authorization_id=declined.authorization_id, decline_code=declined.decline_code
        )
    if auth.status not in ("authorized", "requires_action"):
        # e.g. the key replayed an authorization that was voided since: not a fresh authorization
        raise InvalidPaymentState(
            f"the provider answered {auth.status} to an authorization", authorization_status=auth.status
        )
    return AuthorizationAttempt(
        status="authorized" if auth.status == "authorized" else "requires_action",
        authorization_id=auth.id,
        next_action_url=auth.next_action.url if auth.next_action else None,
        expires_at=auth.expires_at,
    )


async def record_authorization(
    session: AsyncSession,
    *,
    payment_id: uuid.UUID,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    amount: int,
    currency: str,
    idempotency_key: str,
    attempt: AuthorizationAttempt,
) -> AuthorizeResult:
    """The payment row and, unless the outcome is still pending (requires_action), its authorize row."""
    await check_new_payment(session, payment_id, order_id)
    status = {"authorized": P.AUTHORIZED, "requires_action": P.REQUIRES_ACTION, "declined": P.FAILED}[
        attempt.status
    ]
    await repo.insert_payment(
        session,
        {
            "id": payment_id,
            "order_id": order_id,
            "user_id": user_id,
            "provider": PROVIDER,
            "provider_authorization_id": attempt.authorization_id,
            "status": status.value,
            "amount_authorized": amount,
            "currency": currency,
            "decline_code": attempt.decline_code,
            "next_action_url": attempt.next_action_url,
            "authorization_expires_at": attempt.expires_at,
            "idempotency_key": idempotency_key,
            "authorized_at": func.now() if status == P.AUTHORIZED else None,
        },
    )
    if status != P.REQUIRES_ACTION:
        payment = await _payment(session, payment_id, order_id)
        await repo.insert_transaction(
            session,
            payment,
            type_=TransactionType.AUTHORIZE,
            amount=amount,
            status=TransactionStatus.SUCCEEDED if status == P.AUTHORIZED else TransactionStatus.FAILED,
            provider_reference=attempt.authorization_id,
            idempotency_key=idempotency_key,
            error_code=attempt.decline_code,
        )
    return AuthorizeResult(
        payment_id=payment_id,
        status=attempt.status,
        provider_authorization_id=attempt.authorization_id,
        decline_code=attempt.decline_code,
        next_action_url=attempt.next_action_url,
        authorization_expires_at=attempt.expires_at,
    )


# -- capture -------------------------------------------------------------------------------------------


async def check_capture(
    session: AsyncSession, payment_id: uuid.UUID, order_id: uuid.UUID, amount: int | None
) -> tuple[str, int]:
    """The provider authorization id and the amount to capture (default: everything authorized)."""
    payment = await _payment(session, payment_id, order_id)
    if payment.status not in CAPTURABLE or payment.provider_authorization_id is None:
        raise _refuse_state(payment, "captured")
    to_capture = payment.amount_authorized if amount is None else amount
    if to_capture > payment.amount_authorized:
        raise CaptureExceedsAuthorized(
            f"capture of {to_capture} exceeds the authorized {payment.amount_authorized}",
            payment_id=str(payment_id),
            amount_authorized=payment.amount_authorized,
        )
    return payment.provider_authorization_id, to_capture


async def record_capture(
    session: AsyncSession,
    payment_id: uuid.UUID,
    order_id: uuid.UUID,
    auth: Authorization,
    idempotency_key: str,
) -> CaptureResult:
    payment = await _payment(session, payment_id, order_id, for_update=True)
    if payment.status not in CAPTURABLE:
        raise _refuse_state(payment, "captured")
    captured = auth.captured_amount
    status = P.CAPTURED if captured == payment.amount_authorized else P.PARTIALLY_CAPTURED
    await repo.update_payment(
        session, payment, {"status": status.value, "amount_captured": captured, "captured_at": func.now()}
    )
    await repo.insert_transaction(
        session,
        payment,
        type_=TransactionType.CAPTURE,
        amount=captured,
        status=TransactionStatus.SUCCEEDED,
        provider_reference=auth.id,
        idempotency_key=idempotency_key,
    )
    return CaptureResult(payment_id=payment_id, status=status, amount_captured=captured)


# -- void ----------------------------------------------------------------------------------------------


async def check_void(session: AsyncSession, payment_id: uuid.UUID, order_id: uuid.UUID) -> str | None:
    """The authorization to void, or ``None`` when nothing is open (never authorized, failed,
    expired, voided already). A captured payment is refunded, not voided."""
    payment = await repo.get_payment(session, payment_id, order_id)
    if payment is None or payment.status in NOTHING_OPEN:
        return None
    if payment.status not in VOIDABLE or payment.provider_authorization_id is None:
        raise _refuse_state(payment, "voided")
    return payment.provider_authorization_id


async def record_void(
    session: AsyncSession,
    payment_id: uuid.UUID,
    order_id: uuid.UUID,
    auth: Authorization | None,
    idempotency_key: str,
) -> VoidResult:
    """Book the provider's answer to a void: voided, or (found closed meanwhile) expired / declined."""
    payment = await repo.get_payment(session, payment_id, order_id, for_update=True)
    if payment is None:
        return VoidResult(payment_id=payment_id, found=False, status=None, voided=False)
    if auth is None or P(payment.status) in NOTHING_OPEN:
        return VoidResult(payment_id=payment_id, status=P(payment.status), voided=False)
    if auth.status != "voided":
        outcome = await record_provider_outcome(session, payment, auth.status, auth.model_dump())
        return VoidResult(payment_id=payment_id, status=outcome.status, voided=False)
    await repo.update_payment(
        session, payment, {"status": P.VOIDED.value, "voided_at": func.now(), "next_action_url": None}
    )
    await repo.insert_transaction(
        session,
        payment,
        type_=TransactionType.VOID,
        amount=payment.amount_authorized,
        status=TransactionStatus.SUCCEEDED,
        provider_reference=auth.id,
        idempotency_key=idempotency_key,
    )
    return VoidResult(payment_id=payment_id, status=P.VOIDED, voided=True)


async def void_at_provider(
    provider: PaymentProvider, authorization_id: str, idempotency_key: str
) -> Authorization:
    """Void. An authorization the provider already closed (expired, voided, declined) is reported
    as it is: nothing is left open, which is all a void is for."""
    try:
        return await provider.void(authorization_id, idempotency_key=idempotency_key)
    except PaymentOperationRefused:
        auth = await provider.get(authorization_id)
        if auth.status in ("voided", "expired", "declined"):
            return auth
        raise


# -- refund --------------------------------------------------------------------------------------------


def _refundable(payment: Payment) -> int:
    return payment.amount_captured - payment.amount_refunded


def _refuse_refund(payment: Payment, amount: int) -> RefundExceedsCaptured:
    return RefundExceedsCaptured(
        f"refund of {amount} exceeds the {_refundable(payment)} still refundable "
        f"(captured {payment.amount_captured}, refunded {payment.amount_refunded})",
        payment_id=str(payment.id),
        refundable_amount=_refundable(payment),
    )


async def check_refund(session: AsyncSession, payment_id: uuid.UUID, order_id: uuid.UUID, amount: int) -> str:
    payment = await _payment(session, payment_id, order_id)
    if payment.status not in REFUNDABLE or payment.provider_authorization_id is None:
        raise _refuse_state(payment, "refunded")
    if amount > _refundable(payment):
        raise _refuse_refund(payment, amount)
    return payment.provider_authorization_id


async def refund_at_provider(
    provider: PaymentProvider, authorization_id: str, amount: int, idempotency_key: str
) -> str:
    """The provider's refund id."""
    try:
        refund = await provider.refund(authorization_id, amount=amount, idempotency_key=idempotency_key)
    except PaymentOperationRefused as exc:
        if exc.code == "refund_exceeds_captured":
            raise RefundExceedsCaptured(exc.detail, authorization_id=authorization_id) from exc
        raise
    return refund.id


async def record_refund(
    session: AsyncSession,
    *,
    payment_id: uuid.UUID,
    order_id: uuid.UUID,
    amount: int,
    reason: str,
    return_id: uuid.UUID | None,
    provider_refund_id: str,
    idempotency_key: str,
) -> RefundResult:
    payment = await _payment(session, payment_id, order_id, for_update=True)
    if amount > _refundable(payment):  # the provider refused this already; our books must agree
        raise _refuse_refund(payment, amount)
    refund_id = uuid.uuid4()
    await repo.insert_refund(
        session,
        {
            "id": refund_id,
            "payment_id": payment.id,
            "order_id": payment.order_id,
            "amount": amount,
            "currency": payment.currency,
            "reason": reason,
            "status": RefundStatus.SUCCEEDED.value,
            "provider_refund_id": provider_refund_id,
            "return_id": return_id,
            "idempotency_key": idempotency_key,
            "completed_at": func.now(),
        },
    )
    refunded = payment.amount_refunded + amount
    status = P.REFUNDED if refunded == payment.amount_captured else P.PARTIALLY_REFUNDED
    await repo.update_payment(session, payment, {"status": status.value, "amount_refunded": refunded})
    await repo.insert_transaction(
        session,
        payment,
        type_=TransactionType.REFUND,
        amount=amount,
        status=TransactionStatus.SUCCEEDED,
        provider_reference=provider_refund_id,
        idempotency_key=idempotency_key,
    )
    return RefundResult(
        refund_id=refund_id,
        status=RefundStatus.SUCCEEDED,
        amount=amount,
        payment_status=status,
        amount_refunded=refunded,
    )


# -- asynchronous outcomes (webhooks, status refresh) -------------------------------------------------

# Provider authorization status -> what it means for a payment still waiting for its outcome.
_OUTCOMES: Mapping[str, PaymentStatus] = {
    "authorized": P.AUTHORIZED,
    "declined": P.FAILED,
    "expired": P.EXPIRED,
}
# Webhook event type -> the authorization status it reports.
_EVENT_STATUS: Mapping[str, str] = {
    "authorization.succeeded": "authorized",
    "authorization.failed": "declined",
    "authorization.expired": "expired",
}


async def record_provider_outcome(
    session: AsyncSession, payment: Payment, provider_status: str, data: Mapping[str, Any]
) -> PaymentStatusResult:
    """Apply an asynchronous outcome to a payment locked by the caller: the requires_action step
    finished (authorized / declined) or an open authorization expired. Anything else changes nothing
    (our own captures, voids and refunds are booked when we make them)."""
    current = P(payment.status)
    target = _OUTCOMES.get(provider_status)
    unchanged = PaymentStatusResult(
        payment_id=payment.id, order_id=payment.order_id, status=current, changed=False
    )
    if target is None or target == current:
        return unchanged
    if target in (P.AUTHORIZED, P.FAILED) and current != P.REQUIRES_ACTION:
        return unchanged
    if target == P.EXPIRED and current not in VOIDABLE:
        return unchanged
    values: dict[str, Any] = {"status": target.value, "next_action_url": None}
    if target == P.AUTHORIZED:
        values["authorized_at"] = func.now()
    if target == P.FAILED:
        values["decline_code"] = data.get("decline_code") or "declined"
    await repo.update_payment(session, payment, values)
    if current == P.REQUIRES_ACTION and target in (P.AUTHORIZED, P.FAILED):
        await repo.insert_transaction(
            session,
            payment,
            type_=TransactionType.AUTHORIZE,
            amount=payment.amount_authorized,
            status=TransactionStatus.SUCCEEDED if target == P.AUTHORIZED else TransactionStatus.FAILED,
            provider_reference=payment.provider_authorization_id,
            idempotency_key=None,
            error_code=values.get("decline_code"),
        )
    return PaymentStatusResult(payment_id=payment.id, order_id=payment.order_id, status=target, changed=True)


async def record_webhook(session: AsyncSession, event: ProviderEvent) -> WebhookRecorded:
    """Store a provider event once (a redelivery is reported as ``duplicate`` and ignored) and apply
    it to its payment when its signature was valid."""
    webhook_id = await repo.insert_webhook(
        session,
        {
            "id": uuid.uuid4(),
            "provider": PROVIDER,
            "provider_event_id": event.provider_event_id,
            "event_type": event.event_type,
            "payload": event.payload,
            "signature_valid": event.signature_valid,
        },
    )
    if webhook_id is None:
        seen = await repo.get_webhook(session, PROVIDER, event.provider_event_id)
        assert seen is not None
        return WebhookRecorded(
            duplicate=True,
            payment_id=seen.payment_id,
            order_id=seen.order_id,
            event_type=seen.event_type,
            processed=seen.processed_at is not None,
            processing_error=seen.processing_error,
        )
    result = WebhookRecorded(duplicate=False, event_type=event.event_type, processed=False)
    data = event.payload.get("data", event.payload)
    authorization_id = data.get("id") if isinstance(data, Mapping) else None
    if not event.signature_valid:
        result.processing_error = "invalid signature: stored, not applied"
    elif not isinstance(authorization_id, str):
        result.processing_error = "the event names no authorization"
    else:
        payment = await repo.get_payment_by_authorization(session, authorization_id, for_update=True)
        if payment is None:
            result.processing_error = f"no payment for authorization {authorization_id}"
        else:
            status = _EVENT_STATUS.get(event.event_type, "")
            outcome = await record_provider_outcome(session, payment, status, data)
            result.payment_id, result.order_id = payment.id, payment.order_id
            result.payment_status, result.processed = outcome.status, True
    await repo.finish_webhook(
        session,
        webhook_id,
        {
            "payment_id": result.payment_id,
            "order_id": result.order_id,
            "processed_at": func.now() if result.processed else None,
            "processing_error": result.processing_error,
        },
    )
    return result


async def mark_expired(
    session: AsyncSession, payment_id: uuid.UUID, order_id: uuid.UUID
) -> PaymentStatusResult:
    """The provider refused an operation because the authorization expired: book the expiry."""
    payment = await _payment(session, payment_id, order_id, for_update=True)
    return await record_provider_outcome(session, payment, "expired", {})


async def check_refresh(session: AsyncSession, payment_id: uuid.UUID, order_id: uuid.UUID) -> str | None:
    """The authorization whose status is worth asking the provider for (an outcome still open)."""
    payment = await _payment(session, payment_id, order_id)
    if payment.status in VOIDABLE and payment.provider_authorization_id is not None:
        return payment.provider_authorization_id
    return None


async def record_refresh(
    session: AsyncSession, payment_id: uuid.UUID, order_id: uuid.UUID, auth: Authorization | None
) -> PaymentStatusResult:
    payment = await _payment(session, payment_id, order_id, for_update=True)
    if auth is None:
        return PaymentStatusResult(
            payment_id=payment_id, order_id=order_id, status=P(payment.status), changed=False
        )
    return await record_provider_outcome(session, payment, auth.status, auth.model_dump())


# -- reads ---------------------------------------------------------------------------------------------


async def get_payment(
    session: AsyncSession, payment_id: uuid.UUID, order_id: uuid.UUID | None = None
) -> PaymentView:
    payment = await _payment(session, payment_id, order_id)
    transactions = await repo.get_transactions(session, payment.id, payment.order_id)
    refunds = await repo.get_refunds(session, payment.id, payment.order_id)
    return PaymentView(
        id=payment.id,
        order_id=payment.order_id,
        user_id=payment.user_id,
        provider=payment.provider,
        provider_authorization_id=payment.provider_authorization_id,
        status=P(payment.status),
        amount_authorized=payment.amount_authorized,
        amount_captured=payment.amount_captured,
        amount_refunded=payment.amount_refunded,
        currency=payment.currency,
        decline_code=payment.decline_code,
        next_action_url=payment.next_action_url,
        authorization_expires_at=payment.authorization_expires_at,
        version=payment.version,
        created_at=payment.created_at,
        transactions=[TransactionView.model_validate(t, from_attributes=True) for t in transactions],
        refunds=[RefundView.model_validate(r, from_attributes=True) for r in refunds],
    )


async def balance(session: AsyncSession, order_id: uuid.UUID) -> OrderBalance:
    """Per order: captured and refunded according to the ledger, and whether each payment's ledger
    (sum of captures - sum of refunds) equals its running totals (captured - refunded)."""
    payments = [
        PaymentBalance(
            payment_id=row.id,
            currency=row.currency,
            ledger_captured=int(row.ledger_captured),
            ledger_refunded=int(row.ledger_refunded),
            amount_captured=row.amount_captured,
            amount_refunded=row.amount_refunded,
            balanced=int(row.ledger_captured) - int(row.ledger_refunded)
            == row.amount_captured - row.amount_refunded,
        )
        for row in await repo.order_balance_rows(session, order_id)
    ]
    captured = sum(p.ledger_captured for p in payments)
    refunded = sum(p.ledger_refunded for p in payments)
    return OrderBalance(
        order_id=order_id,
        payments=payments,
        captured=captured,
        refunded=refunded,
        net=captured - refunded,
        balanced=all(p.balanced for p in payments),
    )


# -- payment methods -----------------------------------------------------------------------------------


async def save_payment_method(
    session: AsyncSession, cipher: TokenCipher, user_id: uuid.UUID, card: CardToken
) -> SavedPaymentMethod:
    """Keep the provider's token (encrypted) and what a shopper recognizes a card by."""
    method = await repo.upsert_payment_method(
        session,
        {
            "id": uuid.uuid4(),
            "user_id": user_id,
            "provider": PROVIDER,
            "token_encrypted": cipher.encrypt(card.token),
            "brand": card.brand,
            "last4": card.last4,
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
            "fingerprint": card.fingerprint,
        },
    )
    return SavedPaymentMethod.model_validate(method, from_attributes=True)


async def list_payment_methods(session: AsyncSession, user_id: uuid.UUID) -> list[SavedPaymentMethod]:
    return [
        SavedPaymentMethod.model_validate(m, from_attributes=True)
        for m in await repo.list_payment_methods(session, user_id)
    ]


async def payment_method_token(
    session: AsyncSession, cipher: TokenCipher, method_id: uuid.UUID, user_id: uuid.UUID
) -> str:
    """The provider token of one of the user's saved cards (another user's card is not found)."""
    method = await repo.get_payment_method(session, method_id, user_id)
    if method is None:
        raise PaymentMethodNotFound(f"no payment method {method_id}", payment_method_id=str(method_id))
    return cipher.decrypt(method.token_encrypted)
