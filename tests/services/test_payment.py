"""Payment service on the real payment_db against the PSP sandbox as a real subprocess: authorize
(ok / declined / requires_action finished by a signed webhook), capture, void, refund rules, the ledger
balance, idempotency towards the provider, webhook duplicates, saved cards encrypted at rest."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError
from sqlalchemy import text
from temporalio.exceptions import ApplicationError

from activities.payment import (
    AuthorizeInput,
    BalanceInput,
    CaptureInput,
    GetPaymentInput,
    PaymentActivities,
    RecordWebhookInput,
    RefreshInput,
    RefundInput,
    VoidInput,
)
from core.crypto import DecryptionError, TokenCipher
from core.db import SessionFactory
from core.settings import DEV_ENCRYPTION_KEY
from sandboxes.signing import verify
from services.payment import service
from services.payment.models import PaymentStatus
from services.payment.provider import CardDetails, PaymentProvider, PspSandboxProvider
from tests.sandboxes import conftest as sandboxes
from tests.sandboxes.conftest import PSP_SECRET, WebhookReceiver

# The sandbox fixtures (the PSP as a subprocess, a webhook receiver), visible to this module's tests.
psp_url = sandboxes.psp_url
psp = sandboxes.psp
webhooks = sandboxes.webhooks

VISA_OK = "4242424242424242"
VISA_DECLINED = "4000000000000002"
VISA_3DS = "4000000000003220"
P = PaymentStatus


@pytest.fixture
def db(sessions: dict[str, SessionFactory]) -> SessionFactory:
    return sessions["payment"]


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher(DEV_ENCRYPTION_KEY)


@pytest.fixture
def acts(
    sessions: dict[str, SessionFactory], psp: PspSandboxProvider, cipher: TokenCipher
) -> PaymentActivities:
    return PaymentActivities(sessions["payment"], psp, cipher)


def key() -> str:
    return f"checkout-{uuid.uuid4()}:step"


async def token(provider: PaymentProvider, number: str = VISA_OK) -> str:
    card = CardDetails.model_validate({"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"})
    return (await provider.tokenize(card)).token


async def authorize(
    acts: PaymentActivities, number: str = VISA_OK, amount: int = 1000, **extra: Any
) -> tuple[AuthorizeInput, Any]:
    inp = AuthorizeInput(
        idempotency_key=key(),
        payment_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        amount=amount,
        currency="USD",
        psp_token=await token(acts.provider, number),
        **extra,
    )
    return inp, await acts.authorize(inp)


async def rows(db: SessionFactory, sql: str, **params: Any) -> list[Any]:
    async with db() as s:
        return list((await s.execute(text(sql), params)).all())


async def scalar(db: SessionFactory, sql: str, **params: Any) -> Any:
    async with db() as s:
        return (await s.execute(text(sql), params)).scalar()


async def payment_row(db: SessionFactory, payment_id: uuid.UUID) -> Any:
    [row] = await rows(
        db,
        "SELECT status, amount_authorized, amount_captured, amount_refunded, decline_code, "
        "provider_authorization_id, version, tableoid::regclass::text AS partition, order_id "
        "FROM payments WHERE id = :p",
        p=payment_id,
    )
    return row


async def ledger(db: SessionFactory, payment_id: uuid.UUID) -> list[tuple[str, int, str]]:
    found = await rows(
        db,
        "SELECT type, amount, status FROM payment_transactions WHERE payment_id = :p ORDER BY created_at, id",
        p=payment_id,
    )
    return [(r[0], r[1], r[2]) for r in found]


async def captured(acts: PaymentActivities, amount: int = 1000) -> AuthorizeInput:
    inp, _ = await authorize(acts, amount=amount)
    await acts.capture(CaptureInput(idempotency_key=key(), payment_id=inp.payment_id, order_id=inp.order_id))
    return inp


# -- authorize -------------------------------------------------------------------------------------------


async def test_authorize_records_payment_and_ledger_row_in_the_orders_partition(
    acts: PaymentActivities, db: SessionFactory
) -> None:
    inp, result = await authorize(acts)
    assert result.status == "authorized" and result.provider_authorization_id.startswith("auth_")
    row = await payment_row(db, inp.payment_id)
    assert (row.status, row.amount_authorized, row.amount_captured, row.provider_authorization_id) == (
        "authorized",
        1000,
        0,
        result.provider_authorization_id,
    )
    remainder = int(row.partition.removeprefix("payments_p"))
    assert await scalar(
        db,
        "SELECT satisfies_hash_partition('payments'::regclass, 8, :r, CAST(:o AS uuid))",
        r=remainder,
        o=inp.order_id,
    )
    assert await ledger(db, inp.payment_id) == [("authorize", 1000, "succeeded")]
    assert (
        await scalar(db, "SELECT count(*) FROM idempotency_keys WHERE key = :k", k=inp.idempotency_key) == 1
    )


async def test_a_decline_is_a_result_recorded_with_a_failed_ledger_row(
    acts: PaymentActivities, db: SessionFactory
) -> None:
    inp, result = await authorize(acts, VISA_DECLINED)
    assert (result.status, result.decline_code) == ("declined", "card_declined")
    row = await payment_row(db, inp.payment_id)
    assert (row.status, row.decline_code) == ("failed", "card_declined")
    assert await ledger(db, inp.payment_id) == [("authorize", 1000, "failed")]
    # nothing to void, nothing to capture
    void = await acts.void(VoidInput(idempotency_key=key(), payment_id=inp.payment_id, order_id=inp.order_id))
    assert (void.status, void.voided) == (P.FAILED, False)
    with pytest.raises(ApplicationError) as err:
        await acts.capture(
            CaptureInput(idempotency_key=key(), payment_id=inp.payment_id, order_id=inp.order_id)
        )
    assert err.value.type == "InvalidPaymentState"


async def test_requires_action_is_completed_by_the_signed_webhook(
    acts: PaymentActivities,
    db: SessionFactory,
    psp: PspSandboxProvider,
    webhooks: WebhookReceiver,
) -> None:
    path = f"/payments/{uuid.uuid4().hex}"
    inp, result = await authorize(acts, VISA_3DS, webhook_url=webhooks.url(path))
    assert result.status == "requires_action" and result.next_action_url
    assert (await payment_row(db, inp.payment_id)).status == "requires_action"
    assert await ledger(db, inp.payment_id) == []  # no money moved yet

    await psp.simulate_customer_action(result.provider_authorization_id, succeed=True)
    [hook] = await webhooks.wait_for(path, 1)
    event = hook.json()
    delivered = RecordWebhookInput(
        provider_event_id=event["id"],
        event_type=event["type"],
        payload=event,
        signature_valid=verify(PSP_SECRET, hook.body, hook.headers["psp-signature"]) > 0,
    )
    recorded = await acts.record_webhook(delivered)
    assert not recorded.duplicate and recorded.processed
    assert (recorded.payment_id, recorded.order_id, recorded.payment_status) == (
        inp.payment_id,
        inp.order_id,
        P.AUTHORIZED,
    )
    assert (await payment_row(db, inp.payment_id)).status == "authorized"
    assert await ledger(db, inp.payment_id) == [("authorize", 1000, "succeeded")]

    again = await acts.record_webhook(delivered)  # the provider redelivers
    assert again.duplicate and again.payment_id == inp.payment_id
    assert await ledger(db, inp.payment_id) == [("authorize", 1000, "succeeded")]
    assert (
        await scalar(db, "SELECT count(*) FROM payment_webhooks WHERE provider_event_id = :e", e=event["id"])
        == 1
    )
    assert (await payment_row(db, inp.payment_id)).version == 2


async def test_failed_extra_step_and_forged_webhooks(acts: PaymentActivities, db: SessionFactory) -> None:
    inp, result = await authorize(acts, VISA_3DS)
    data = {
        "id": result.provider_authorization_id,
        "status": "declined",
        "decline_code": "authentication_failed",
    }
    forged = RecordWebhookInput(
        provider_event_id=f"evt_{uuid.uuid4().hex}",
        event_type="authorization.failed",
        payload={"type": "authorization.failed", "data": data},
        signature_valid=False,
    )
    stored = await acts.record_webhook(forged)
    assert not stored.processed and stored.processing_error and "signature" in stored.processing_error
    assert (await payment_row(db, inp.payment_id)).status == "requires_action"

    genuine = forged.model_copy(
        update={"provider_event_id": f"evt_{uuid.uuid4().hex}", "signature_valid": True}
    )
    applied = await acts.record_webhook(genuine)
    assert applied.payment_status == P.FAILED
    row = await payment_row(db, inp.payment_id)
    assert (row.status, row.decline_code) == ("failed", "authentication_failed")
    assert await ledger(db, inp.payment_id) == [("authorize", 1000, "failed")]


async def test_refresh_learns_an_outcome_whose_webhook_was_lost(
    acts: PaymentActivities,
    db: SessionFactory,
    psp: PspSandboxProvider,
) -> None:
    inp, result = await authorize(acts, VISA_3DS)  # no webhook url: nobody hears about it
    await psp.simulate_customer_action(result.provider_authorization_id, succeed=True)
    refreshed = await acts.refresh(
        RefreshInput(idempotency_key=key(), payment_id=inp.payment_id, order_id=inp.order_id)
    )
    assert refreshed.changed and refreshed.status == P.AUTHORIZED
    assert await ledger(db, inp.payment_id) == [("authorize", 1000, "succeeded")]


async def test_authorize_is_idempotent_towards_the_provider(
    acts: PaymentActivities,
    db: SessionFactory,
    psp: PspSandboxProvider,
) -> None:
    inp, first = await authorize(acts)
    assert await acts.authorize(inp) == first
    assert len(await psp.list_authorizations(reference=str(inp.order_id))) == 1
    assert await scalar(db, "SELECT count(*) FROM payments WHERE order_id = :o", o=inp.order_id) == 1

    with pytest.raises(ApplicationError) as err:
        await acts.authorize(inp.model_copy(update={"amount": 999}))
    assert err.value.type == "IdempotencyKeyReused"
    with pytest.raises(ApplicationError) as err:  # same payment id under another key
        await acts.authorize(inp.model_copy(update={"idempotency_key": key()}))
    assert err.value.type == "PaymentAlreadyExists"
    assert len(await psp.list_authorizations(reference=str(inp.order_id))) == 1


async def test_a_retry_after_a_crash_before_the_commit_replays_the_provider_call(
    acts: PaymentActivities,
    db: SessionFactory,
    psp: PspSandboxProvider,
) -> None:
    inp = AuthorizeInput(
        idempotency_key=key(),
        payment_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        amount=2500,
        currency="USD",
        psp_token=await token(psp),
    )
    # The first attempt reached the provider, then the worker died before writing anything.
    lost = await psp.authorize(
        token=inp.psp_token or "",
        amount=2500,
        currency="USD",
        reference=str(inp.order_id),
        idempotency_key=inp.idempotency_key,
    )
    result = await acts.authorize(inp)  # Temporal's retry
    assert result.provider_authorization_id == lost.id
    assert len(await psp.list_authorizations(reference=str(inp.order_id))) == 1
    assert await ledger(db, inp.payment_id) == [("authorize", 2500, "succeeded")]


async def test_an_encrypted_token_is_decrypted_only_here(
    acts: PaymentActivities, db: SessionFactory, psp: PspSandboxProvider, cipher: TokenCipher
) -> None:
    """The checkout carries the card's token as the user service stores it (encrypted): the payment
    service decrypts it for the provider. A token the configured keys cannot decrypt is not a business
    refusal (retryable: an operator fixes the key) and nothing is written or sent."""
    base = {
        "payment_id": uuid.uuid4(),
        "order_id": uuid.uuid4(),
        "user_id": uuid.uuid4(),
        "amount": 1500,
        "currency": "USD",
    }
    inp = AuthorizeInput.model_validate(
        base | {"idempotency_key": key(), "psp_token_encrypted": cipher.encrypt(await token(psp))}
    )
    assert (await acts.authorize(inp)).status == "authorized"
    assert await ledger(db, inp.payment_id) == [("authorize", 1500, "succeeded")]

    foreign = TokenCipher(Fernet.generate_key()).encrypt(await token(psp))
    other = AuthorizeInput.model_validate(
        base | {"payment_id": uuid.uuid4(), "idempotency_key": key(), "psp_token_encrypted": foreign}
    )
    with pytest.raises(DecryptionError):
        await acts.authorize(other)
    assert await ledger(db, other.payment_id) == []
    assert len(await psp.list_authorizations(reference=str(inp.order_id))) == 1


def test_invalid_authorize_input_is_refused() -> None:
    base: dict[str, Any] = {
        "idempotency_key": "k",
        "payment_id": uuid.uuid4(),
        "order_id": uuid.uuid4(),
        "user_id": uuid.uuid4(),
        "amount": 100,
        "currency": "USD",
        "psp_token": "tok_x",
    }
    AuthorizeInput.model_validate(base)
    for bad in (
        {"amount": 0},
        {"amount": -5},
        {"currency": "usd"},
        {"psp_token": None},
        {"payment_method_id": uuid.uuid4()},  # two of them
        {"psp_token_encrypted": "gAAAA"},  # two of them
        {"psp_token": None, "psp_token_encrypted": "gAAAA", "payment_method_id": uuid.uuid4()},
        {"idempotency_key": ""},
    ):
        with pytest.raises(ValidationError):
            AuthorizeInput.model_validate(base | bad)
    with pytest.raises(ValidationError):
        RefundInput(idempotency_key="k", payment_id=uuid.uuid4(), order_id=uuid.uuid4(), amount=0, reason="x")


# -- capture / void ------------------------------------------------------------------------------------


async def test_partial_capture_then_no_second_capture(acts: PaymentActivities, db: SessionFactory) -> None:
    inp, _ = await authorize(acts, amount=1000)
    with pytest.raises(ApplicationError) as err:
        await acts.capture(
            CaptureInput(idempotency_key=key(), payment_id=inp.payment_id, order_id=inp.order_id, amount=1001)
        )
    assert err.value.type == "CaptureExceedsAuthorized"
    assert (await payment_row(db, inp.payment_id)).amount_captured == 0

    step = CaptureInput(idempotency_key=key(), payment_id=inp.payment_id, order_id=inp.order_id, amount=600)
    result = await acts.capture(step)
    assert (result.status, result.amount_captured) == (P.PARTIALLY_CAPTURED, 600)
    assert await acts.capture(step) == result  # same key: no second capture
    row = await payment_row(db, inp.payment_id)
    assert (row.status, row.amount_captured) == ("partially_captured", 600)
    assert await ledger(db, inp.payment_id) == [
        ("authorize", 1000, "succeeded"),
        ("capture", 600, "succeeded"),
    ]

    with pytest.raises(ApplicationError) as err:
        await acts.capture(
            CaptureInput(idempotency_key=key(), payment_id=inp.payment_id, order_id=inp.order_id)
        )
    assert err.value.type == "InvalidPaymentState"
    with pytest.raises(ApplicationError) as err:  # captured money is refunded, not voided
        await acts.void(VoidInput(idempotency_key=key(), payment_id=inp.payment_id, order_id=inp.order_id))
    assert err.value.type == "InvalidPaymentState"


async def test_void_closes_the_authorization_once(
    acts: PaymentActivities,
    db: SessionFactory,
    psp: PspSandboxProvider,
) -> None:
    inp, auth = await authorize(acts)
    voided = await acts.void(
        VoidInput(idempotency_key=key(), payment_id=inp.payment_id, order_id=inp.order_id)
    )
    assert (voided.status, voided.voided) == (P.VOIDED, True)
    assert (await psp.get(auth.provider_authorization_id)).status == "voided"
    again = await acts.void(
        VoidInput(idempotency_key=key(), payment_id=inp.payment_id, order_id=inp.order_id)
    )
    assert (again.status, again.voided) == (P.VOIDED, False)
    assert await ledger(db, inp.payment_id) == [("authorize", 1000, "succeeded"), ("void", 1000, "succeeded")]
    with pytest.raises(ApplicationError) as err:
        await acts.capture(
            CaptureInput(idempotency_key=key(), payment_id=inp.payment_id, order_id=inp.order_id)
        )
    assert err.value.type == "InvalidPaymentState"

    # Compensating an authorize that never happened is a no-op.
    ghost = await acts.void(VoidInput(idempotency_key=key(), payment_id=uuid.uuid4(), order_id=uuid.uuid4()))
    assert not ghost.found and not ghost.voided


async def test_capture_of_an_expired_authorization_is_refused_and_booked(
    acts: PaymentActivities,
    db: SessionFactory,
    psp: PspSandboxProvider,
) -> None:
    inp, auth = await authorize(acts)
    await psp.expire_now(auth.provider_authorization_id)
    with pytest.raises(ApplicationError) as err:
        await acts.capture(
            CaptureInput(idempotency_key=key(), payment_id=inp.payment_id, order_id=inp.order_id)
        )
    assert err.value.type == "AuthorizationExpired"
    row = await payment_row(db, inp.payment_id)
    assert (row.status, row.amount_captured) == ("expired", 0)


# -- refunds and the ledger ------------------------------------------------------------------------------


async def test_refunds_never_exceed_what_was_captured(
    acts: PaymentActivities,
    db: SessionFactory,
    psp: PspSandboxProvider,
) -> None:
    inp = await captured(acts, 1000)
    return_id = uuid.uuid4()

    def refund(amount: int) -> RefundInput:
        return RefundInput(
            idempotency_key=key(),
            payment_id=inp.payment_id,
            order_id=inp.order_id,
            amount=amount,
            reason="returned",
            return_id=return_id,
        )

    first = await acts.refund(refund(300))
    assert (first.payment_status, first.amount_refunded) == (P.PARTIALLY_REFUNDED, 300)

    with pytest.raises(ApplicationError) as err:
        await acts.refund(refund(701))
    assert err.value.type == "RefundExceedsCaptured" and err.value.details[0]["refundable_amount"] == 700
    assert await scalar(db, "SELECT count(*) FROM refunds WHERE payment_id = :p", p=inp.payment_id) == 1
    auth_id = (await payment_row(db, inp.payment_id)).provider_authorization_id
    assert (await psp.get(auth_id)).refunded_amount == 300  # refused before reaching the provider

    last = await acts.refund(refund(700))
    assert (last.payment_status, last.amount_refunded) == (P.REFUNDED, 1000)
    assert (
        await scalar(
            db, "SELECT count(*) FROM refunds WHERE return_id = :r AND status = 'succeeded'", r=return_id
        )
        == 2
    )
    with pytest.raises(ApplicationError) as err:
        await acts.refund(refund(1))
    assert err.value.type == "RefundExceedsCaptured"

    balance = await acts.balance(BalanceInput(order_id=inp.order_id))
    assert (balance.captured, balance.refunded, balance.net, balance.balanced) == (1000, 1000, 0, True)
    view = await acts.get(GetPaymentInput(payment_id=inp.payment_id))
    assert [t.type for t in view.transactions] == ["authorize", "capture", "refund", "refund"]
    assert [r.amount for r in view.refunds] == [300, 700]


async def test_concurrent_refunds_cannot_overdraw(acts: PaymentActivities, db: SessionFactory) -> None:
    inp = await captured(acts, 1000)
    attempts = [
        RefundInput(
            idempotency_key=key(), payment_id=inp.payment_id, order_id=inp.order_id, amount=600, reason="r"
        )
        for _ in range(4)
    ]
    results = await asyncio.gather(*(acts.refund(a) for a in attempts), return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, ApplicationError)]
    assert len(ok) == 1 and len(refused) == 3
    assert {e.type for e in refused} == {"RefundExceedsCaptured"}
    row = await payment_row(db, inp.payment_id)
    assert row.amount_refunded == 600
    assert (await acts.balance(BalanceInput(order_id=inp.order_id))).balanced


async def test_balance_detects_a_ledger_that_disagrees(acts: PaymentActivities, db: SessionFactory) -> None:
    inp = await captured(acts, 800)
    async with db() as s, s.begin():
        before = await service.balance(s, inp.order_id)
        assert before.balanced and before.net == 800
        # a ledger row without its effect on the payment: exactly what the check is for
        await s.execute(
            text(
                "INSERT INTO payment_transactions (id, payment_id, order_id, type, amount, currency, status) "
                "VALUES (:i, :p, :o, 'refund', 100, 'USD', 'succeeded')"
            ),
            {"i": uuid.uuid4(), "p": inp.payment_id, "o": inp.order_id},
        )
        after = await service.balance(s, inp.order_id)
        assert not after.balanced and after.refunded == 100
        await s.rollback()


# -- saved cards -----------------------------------------------------------------------------------------


async def test_saved_card_token_is_encrypted_and_usable_only_by_its_owner(
    acts: PaymentActivities,
    db: SessionFactory,
    psp: PspSandboxProvider,
    cipher: TokenCipher,
) -> None:
    user = uuid.uuid4()
    card = await psp.tokenize(
        CardDetails.model_validate({"number": VISA_OK, "exp_month": 1, "exp_year": 2041, "cvc": "123"})
    )
    async with db() as s, s.begin():
        saved = await service.save_payment_method(s, cipher, user, card)
    async with db() as s, s.begin():  # the same card again is the same row
        assert (await service.save_payment_method(s, cipher, user, card)).id == saved.id
    stored = await scalar(db, "SELECT token_encrypted FROM payment_methods WHERE id = :m", m=saved.id)
    assert card.token not in stored and cipher.decrypt(stored) == card.token
    assert (saved.brand, saved.last4) == ("visa", "4242")

    base = {
        "payment_id": uuid.uuid4(),
        "order_id": uuid.uuid4(),
        "user_id": user,
        "amount": 1500,
        "currency": "USD",
        "payment_method_id": saved.id,
    }
    result = await acts.authorize(AuthorizeInput.model_validate(base | {"idempotency_key": key()}))
    assert result.status == "authorized"
    with pytest.raises(ApplicationError) as err:
        await acts.authorize(
            AuthorizeInput.model_validate(
                base | {"idempotency_key": key(), "payment_id": uuid.uuid4(), "user_id": uuid.uuid4()}
            )
        )
    assert err.value.type == "PaymentMethodNotFound"
