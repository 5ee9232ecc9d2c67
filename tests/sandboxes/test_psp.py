"""The PSP sandbox, exercised through ``PspSandboxProvider`` against a real subprocess."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx
import pytest

from core.errors import IdempotencyKeyReused
from sandboxes.signing import InvalidSignature, verify
from services.payment.provider import (
    Authorization,
    AuthorizationExpired,
    CardDetails,
    InvalidCard,
    PaymentDeclined,
    PaymentNotFound,
    PaymentOperationRefused,
    PaymentProvider,
    ProviderRequestError,
    ProviderUnavailable,
    PspSandboxProvider,
)
from tests.sandboxes.conftest import (
    PSP_SECRET,
    WEBHOOK_MAX_ATTEMPTS,
    SandboxProcess,
    WebhookReceiver,
    free_port,
)

VISA_OK = "4242424242424242"
VISA_DECLINED = "4000000000000002"
VISA_3DS = "4000000000003220"


def _conforms(provider: PspSandboxProvider) -> PaymentProvider:
    return provider  # mypy checks that the adapter implements the port


def card(number: str, exp_year: int = 2040, exp_month: int = 12, cvc: str = "123") -> CardDetails:
    return CardDetails.model_validate(
        {"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": cvc}
    )


def ref() -> str:
    return f"order-{uuid.uuid4().hex[:12]}"


def key() -> str:
    return f"wf-{uuid.uuid4().hex}:step"


async def authorized(
    psp: PspSandboxProvider, amount: int = 1000, number: str = VISA_OK, webhook_url: str | None = None
) -> Authorization:
    token = await psp.tokenize(card(number))
    return await psp.authorize(
        token=token.token,
        amount=amount,
        currency="EUR",
        reference=ref(),
        idempotency_key=key(),
        webhook_url=webhook_url,
    )


# -- tokens -------------------------------------------------------------------------------------


async def test_tokenize_returns_brand_last4_and_an_opaque_token(psp: PspSandboxProvider) -> None:
    token = await psp.tokenize(card("4242 4242 4242 4242", exp_year=2031, exp_month=7))
    assert (token.brand, token.last4, token.exp_month, token.exp_year) == ("visa", "4242", 7, 2031)
    assert token.token.startswith("tok_") and "4242" not in token.token
    again = await psp.tokenize(card(VISA_OK))
    assert again.token != token.token and again.fingerprint == token.fingerprint


@pytest.mark.parametrize(
    ("details", "code"),
    [
        (card("4242424242424241"), "invalid_number"),  # Luhn fails
        (card("4242"), "invalid_number"),
        (card(VISA_OK, exp_year=2020), "expired_card"),
        (card(VISA_OK, cvc="12"), "invalid_cvc"),
    ],
)
async def test_tokenize_refuses_bad_cards(psp: PspSandboxProvider, details: CardDetails, code: str) -> None:
    with pytest.raises(InvalidCard) as exc:
        await psp.tokenize(details)
    assert exc.value.code == code


# -- authorize ----------------------------------------------------------------------------------


async def test_authorize_success_card(psp: PspSandboxProvider) -> None:
    auth = await authorized(psp, amount=2599)
    assert auth.status == "authorized" and auth.amount == 2599 and auth.currency == "EUR"
    assert auth.last4 == "4242" and auth.decline_code is None
    assert await psp.get(auth.id) == auth
    assert [a.id for a in await psp.list_authorizations(auth.reference)] == [auth.id]


async def test_declined_card_raises_payment_declined_with_code(psp: PspSandboxProvider) -> None:
    token = await psp.tokenize(card(VISA_DECLINED))
    reference, k = ref(), key()
    with pytest.raises(PaymentDeclined) as exc:
        await psp.authorize(
            token=token.token, amount=500, currency="USD", reference=reference, idempotency_key=k
        )
    assert exc.value.decline_code == "card_declined"
    assert exc.value.to_application_error().non_retryable
    [auth] = await psp.list_authorizations(reference)
    assert auth.status == "declined" and auth.id == exc.value.authorization_id
    # A retry with the same key is told the same thing, about the same authorization.
    with pytest.raises(PaymentDeclined) as again:
        await psp.authorize(
            token=token.token, amount=500, currency="USD", reference=reference, idempotency_key=k
        )
    assert again.value.authorization_id == auth.id


async def test_unknown_token_is_a_decline_and_bad_input_a_request_error(psp: PspSandboxProvider) -> None:
    with pytest.raises(PaymentDeclined) as exc:
        await psp.authorize(
            token="tok_nope", amount=1, currency="EUR", reference=ref(), idempotency_key=key()
        )
    assert exc.value.decline_code == "invalid_token"
    token = await psp.tokenize(card(VISA_OK))
    for amount, currency in ((1000, "eur"), (0, "EUR")):
        with pytest.raises(ProviderRequestError) as bad:
            await psp.authorize(
                token=token.token, amount=amount, currency=currency, reference=ref(), idempotency_key=key()
            )
        assert bad.value.status_code == 422 and not bad.value.retryable
    with pytest.raises(PaymentNotFound):
        await psp.get("auth_does_not_exist")


async def test_idempotency_key_is_required(psp_url: str, psp: PspSandboxProvider) -> None:
    token = await psp.tokenize(card(VISA_OK))
    async with httpx.AsyncClient(base_url=psp_url) as http:
        body = {"token": token.token, "amount": 100, "currency": "EUR", "reference": ref()}
        response = await http.post("/v1/authorizations", json=body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "idempotency_key_required"


async def test_same_key_same_body_replays_first_response(psp_url: str, psp: PspSandboxProvider) -> None:
    token = await psp.tokenize(card(VISA_OK))
    reference, k = ref(), key()
    body = {"token": token.token, "amount": 700, "currency": "EUR", "reference": reference}
    async with httpx.AsyncClient(base_url=psp_url, headers={"Idempotency-Key": k}) as http:
        first = await http.post("/v1/authorizations", json=body)
        second = await http.post("/v1/authorizations", json=body)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers.get("idempotent-replayed") == "true"
    assert len(await psp.list_authorizations(reference)) == 1
    # The adapter sees the same authorization too.
    via_adapter = await psp.authorize(
        token=token.token, amount=700, currency="EUR", reference=reference, idempotency_key=k
    )
    assert via_adapter.id == first.json()["id"]


async def test_same_key_different_body_is_refused(psp: PspSandboxProvider) -> None:
    token = await psp.tokenize(card(VISA_OK))
    reference, k = ref(), key()
    await psp.authorize(token=token.token, amount=700, currency="EUR", reference=reference, idempotency_key=k)
    with pytest.raises(IdempotencyKeyReused):
        await psp.authorize(
            token=token.token, amount=701, currency="EUR", reference=reference, idempotency_key=k
        )
    # ... also on another endpoint
    auth = (await psp.list_authorizations(reference))[0]
    with pytest.raises(IdempotencyKeyReused):
        await psp.capture(auth.id, idempotency_key=k)
    assert len(await psp.list_authorizations(reference)) == 1


# -- requires_action and webhooks ---------------------------------------------------------------


async def test_requires_action_outcome_arrives_as_signed_webhook(
    psp: PspSandboxProvider, webhooks: WebhookReceiver
) -> None:
    path = f"/psp/{uuid.uuid4().hex}"
    auth = await authorized(psp, number=VISA_3DS, webhook_url=webhooks.url(path))
    assert auth.status == "requires_action"
    assert auth.next_action is not None and auth.next_action.url is not None
    assert auth.next_action.url.endswith(f"/v1/authorizations/{auth.id}/confirm")
    assert webhooks.at(path) == []  # nothing is sent before the shopper acts

    await psp.simulate_customer_action(auth.id, succeed=True)
    [hook] = await webhooks.wait_for(path, 1)
    assert verify(PSP_SECRET, hook.body, hook.headers["psp-signature"]) > 0
    with pytest.raises(InvalidSignature):
        verify("another-secret", hook.body, hook.headers["psp-signature"])
    event = hook.json()
    assert event["type"] == "authorization.succeeded" and event["id"].startswith("evt_")
    assert isinstance(event["created"], int)
    assert event["data"]["id"] == auth.id and event["data"]["status"] == "authorized"
    assert (await psp.get(auth.id)).status == "authorized"
    # The step cannot be finished twice.
    with pytest.raises(PaymentOperationRefused) as exc:
        await psp.simulate_customer_action(auth.id, succeed=False)
    assert exc.value.code == "invalid_state"


async def test_failed_extra_step_sends_authorization_failed(
    psp: PspSandboxProvider, webhooks: WebhookReceiver
) -> None:
    path = f"/psp/{uuid.uuid4().hex}"
    auth = await authorized(psp, number=VISA_3DS, webhook_url=webhooks.url(path))
    await psp.simulate_customer_action(auth.id, succeed=False)
    [hook] = await webhooks.wait_for(path, 1)
    verify(PSP_SECRET, hook.body, hook.headers["psp-signature"])
    event = hook.json()
    assert event["type"] == "authorization.failed"
    assert event["data"]["status"] == "declined" and event["data"]["decline_code"] == "authentication_failed"
    with pytest.raises(PaymentOperationRefused):
        await psp.capture(auth.id, idempotency_key=key())


async def test_webhook_is_retried_with_the_same_event_id(
    psp_url: str, psp: PspSandboxProvider, webhooks: WebhookReceiver
) -> None:
    path = f"/psp/{uuid.uuid4().hex}"
    auth = await authorized(psp, number=VISA_3DS, webhook_url=webhooks.url(path))
    webhooks.fail_next(path, 2)
    await psp.simulate_customer_action(auth.id, succeed=True)
    hooks = await webhooks.wait_for(path, 3)
    events = [h.json() for h in hooks]
    assert len({e["id"] for e in events}) == 1
    assert len({h.body for h in hooks}) == 1
    for h in hooks:
        verify(PSP_SECRET, h.body, h.headers["psp-signature"])
    async with httpx.AsyncClient(base_url=psp_url) as http:
        [delivery] = (await http.get("/_control/webhooks", params={"event_id": events[0]["id"]})).json()
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3


async def test_webhook_to_a_dead_receiver_gives_up_after_max_attempts(
    psp_url: str, psp: PspSandboxProvider
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/psp-hooks"  # nothing listens there
    auth = await authorized(psp, number=VISA_3DS, webhook_url=dead)
    await psp.simulate_customer_action(auth.id, succeed=True)
    async with httpx.AsyncClient(base_url=psp_url) as http:
        for _ in range(100):
            deliveries = [
                d for d in (await http.get("/_control/webhooks")).json() if d["body"].find(auth.id) >= 0
            ]
            if deliveries and deliveries[0]["status"] != "pending":
                break
            await asyncio.sleep(0.05)
    [delivery] = deliveries
    assert delivery["status"] == "failed" and delivery["attempts"] == WEBHOOK_MAX_ATTEMPTS


# -- capture, void, refund ----------------------------------------------------------------------


async def test_partial_capture_and_refunds_up_to_the_captured_amount(psp: PspSandboxProvider) -> None:
    auth = await authorized(psp, amount=1000)
    captured = await psp.capture(auth.id, amount=600, idempotency_key=key())
    assert captured.status == "captured" and captured.captured_amount == 600

    first_key = key()
    refund = await psp.refund(auth.id, amount=400, idempotency_key=first_key)
    assert (refund.amount, refund.authorization_id, refund.status) == (400, auth.id, "succeeded")
    # A retried refund (same key) does not refund twice.
    assert await psp.refund(auth.id, amount=400, idempotency_key=first_key) == refund
    with pytest.raises(PaymentOperationRefused) as exc:
        await psp.refund(auth.id, amount=201, idempotency_key=key())
    assert exc.value.code == "refund_exceeds_captured"
    await psp.refund(auth.id, amount=200, idempotency_key=key())
    final = await psp.get(auth.id)
    assert (final.status, final.captured_amount, final.refunded_amount) == ("refunded", 600, 600)
    assert [r.amount for r in final.refunds] == [400, 200]
    with pytest.raises(PaymentOperationRefused) as exc:
        await psp.refund(auth.id, amount=1, idempotency_key=key())
    assert exc.value.code == "refund_exceeds_captured"


async def test_capture_more_than_authorized_is_refused(psp: PspSandboxProvider) -> None:
    auth = await authorized(psp, amount=1000)
    with pytest.raises(PaymentOperationRefused) as exc:
        await psp.capture(auth.id, amount=1001, idempotency_key=key())
    assert exc.value.code == "amount_exceeds_authorized"
    assert (await psp.capture(auth.id, idempotency_key=key())).captured_amount == 1000


async def test_invalid_transitions_are_409_problems(psp: PspSandboxProvider) -> None:
    captured = await authorized(psp)
    await psp.capture(captured.id, idempotency_key=key())
    voided = await authorized(psp)
    assert (await psp.void(voided.id, idempotency_key=key())).status == "voided"
    fresh = await authorized(psp)
    cases = [
        (psp.void(captured.id, idempotency_key=key()), "captured"),  # void after capture
        (psp.capture(captured.id, idempotency_key=key()), "captured"),  # capture twice
        (psp.capture(voided.id, idempotency_key=key()), "voided"),
        (psp.void(voided.id, idempotency_key=key()), "voided"),
        (psp.refund(voided.id, amount=1, idempotency_key=key()), "voided"),
        (psp.refund(fresh.id, amount=1, idempotency_key=key()), "authorized"),  # refund before capture
    ]
    for call, status in cases:
        with pytest.raises(PaymentOperationRefused) as exc:
            await call
        assert (exc.value.code, exc.value.authorization_status) == ("invalid_state", status)
        assert exc.value.status == 409


async def test_a_refused_transition_is_replayed_under_its_key(psp_url: str, psp: PspSandboxProvider) -> None:
    auth = await authorized(psp)
    await psp.void(auth.id, idempotency_key=key())
    async with httpx.AsyncClient(base_url=psp_url, headers={"Idempotency-Key": key()}) as http:
        first = await http.post(f"/v1/authorizations/{auth.id}/capture")
        second = await http.post(f"/v1/authorizations/{auth.id}/capture", json={})
    assert first.status_code == second.status_code == 409
    assert first.json() == second.json() and first.json()["type"] == "invalid_state"
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"


async def test_expired_authorization_cannot_be_captured(psp: PspSandboxProvider) -> None:
    auth = await authorized(psp)
    assert (await psp.expire_now(auth.id)).status == "expired"
    with pytest.raises(AuthorizationExpired) as exc:
        await psp.capture(auth.id, idempotency_key=key())
    assert exc.value.code == "authorization_expired"


# -- fault injection ----------------------------------------------------------------------------


async def test_error_fault_fails_without_doing_anything(psp: PspSandboxProvider) -> None:
    auth = await authorized(psp)
    await psp.inject_fault("capture", "error", count=2)
    k = key()
    for _ in range(2):
        with pytest.raises(ProviderUnavailable) as exc:
            await psp.capture(auth.id, idempotency_key=k)
        assert exc.value.retryable and exc.value.status_code == 500
    assert (await psp.get(auth.id)).status == "authorized"
    assert (await psp.capture(auth.id, idempotency_key=k)).status == "captured"


async def test_accept_then_error_retry_with_same_key_returns_the_first_result(
    psp: PspSandboxProvider,
) -> None:
    token = await psp.tokenize(card(VISA_OK))
    reference, k = ref(), key()
    await psp.inject_fault("authorize", "accept_then_error")
    with pytest.raises(ProviderUnavailable):
        await psp.authorize(
            token=token.token, amount=900, currency="EUR", reference=reference, idempotency_key=k
        )
    [done] = await psp.list_authorizations(reference)  # it happened, though the caller heard 500
    retry = await psp.authorize(
        token=token.token, amount=900, currency="EUR", reference=reference, idempotency_key=k
    )
    assert retry.id == done.id and retry.status == "authorized"
    assert len(await psp.list_authorizations(reference)) == 1


async def test_delay_fault_makes_the_adapter_time_out(psp_url: str, psp: PspSandboxProvider) -> None:
    auth = await authorized(psp)
    await psp.inject_fault("get", "delay", delay_ms=1500)
    async with PspSandboxProvider(psp_url, timeout=0.3) as impatient:
        with pytest.raises(ProviderUnavailable, match="timed out"):
            await impatient.get(auth.id)
        assert (await impatient.get(auth.id)).id == auth.id  # the fault was used up


async def test_unreachable_provider_is_retryable(psp: PspSandboxProvider) -> None:
    async with PspSandboxProvider(f"http://127.0.0.1:{free_port()}", timeout=1.0) as nowhere:
        with pytest.raises(ProviderUnavailable) as exc:
            await nowhere.get("auth_x")
    assert exc.value.retryable


async def test_unknown_fault_operation_is_refused(psp_url: str) -> None:
    async with httpx.AsyncClient(base_url=psp_url) as http:
        response = await http.post("/_control/faults", json={"operation": "authorise", "mode": "error"})
    assert response.status_code == 422


# -- state file ---------------------------------------------------------------------------------


async def test_state_file_survives_restart_and_authorizations_expire(
    tmp_path_factory: pytest.TempPathFactory,
    start_psp: Callable[..., tuple[str, SandboxProcess]],
    webhooks: WebhookReceiver,
) -> None:
    state_file = tmp_path_factory.mktemp("psp") / "psp-state.json"
    args = ("--state-file", str(state_file), "--auth-ttl-seconds", "2")
    url, first = start_psp(*args)
    path = f"/psp/{uuid.uuid4().hex}"
    reference, k = ref(), key()
    async with PspSandboxProvider(url) as psp:
        token = await psp.tokenize(card(VISA_OK))
        auth = await psp.authorize(
            token=token.token,
            amount=300,
            currency="EUR",
            reference=reference,
            idempotency_key=k,
            webhook_url=webhooks.url(path),
        )
    await asyncio.to_thread(first.stop)
    assert VISA_OK not in state_file.read_text()  # the card number is never stored

    url, _ = start_psp(*args)
    async with PspSandboxProvider(url) as psp:
        assert (await psp.get(auth.id)).reference == reference
        replay = await psp.authorize(
            token=token.token,
            amount=300,
            currency="EUR",
            reference=reference,
            idempotency_key=k,
            webhook_url=webhooks.url(path),
        )
        assert replay == auth
        [hook] = await webhooks.wait_for(path, 1, within_s=10)  # the TTL timer fires by itself
        assert hook.json()["type"] == "authorization.expired"
        with pytest.raises(AuthorizationExpired):
            await psp.capture(auth.id, idempotency_key=key())
        assert (await psp.get(auth.id)).status == "expired"
