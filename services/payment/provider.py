"""The payment provider port (:class:`PaymentProvider`) and its adapter for the PSP sandbox.

Activities talk to a card processor only through :class:`PaymentProvider`; a real processor's adapter
implements the same Protocol. Outcomes come back as typed results, refusals as exceptions of two
kinds that the activity layer treats differently:

* business refusals (subclasses of :class:`core.errors.BusinessError`): retrying the same call cannot
  succeed - :class:`PaymentDeclined` (with ``decline_code``), :class:`InvalidCard`,
  :class:`PaymentOperationRefused` (invalid transition, over-limit capture or refund) and its
  :class:`AuthorizationExpired`, :class:`PaymentNotFound`, ``IdempotencyKeyReused``;
* :class:`ProviderUnavailable`: transport error, timeout, 5xx or 429 - retry with the *same*
  idempotency key (the provider may have done it; the key makes the retry return that result).

:class:`ProviderRequestError` is neither: the provider rejected the request's shape (a bug here).

Every writing call takes an idempotency key, sent as the ``Idempotency-Key`` header.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NoReturn, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from core.errors import BusinessError, IdempotencyKeyReused, NotFound
from core.http_adapter import JsonHttpAdapter, ProviderError

_M = TypeVar("_M", bound=BaseModel)

AuthorizationStatus = Literal[
    "requires_action", "authorized", "declined", "voided", "captured", "refunded", "expired"
]
FaultOperation = Literal[
    "tokenize", "authorize", "confirm", "capture", "void", "refund", "get", "list", "any"
]
FaultMode = Literal["error", "delay", "accept_then_error", "accept_then_delay"]

# Card errors the provider answers to tokenization (422).
CARD_ERROR_CODES = frozenset(
    {"invalid_number", "invalid_expiry_month", "invalid_expiry_year", "expired_card", "invalid_cvc"}
)


# --------------------------------------------------------------------------------------------
# Results


class _Result(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CardDetails(BaseModel):
    """What the shopper typed. Number and CVC are secrets: they never show in logs or reprs."""

    number: SecretStr
    exp_month: int = Field(ge=1, le=12)
    exp_year: int
    cvc: SecretStr


class CardToken(_Result):
    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str | None = None


class NextAction(_Result):
    type: str
    url: str | None = None


class Refund(_Result):
    id: str
    authorization_id: str
    amount: int
    currency: str
    status: str
    created_at: datetime


class Authorization(_Result):
    id: str
    status: AuthorizationStatus
    amount: int
    currency: str
    reference: str
    decline_code: str | None = None
    next_action: NextAction | None = None
    captured_amount: int = 0
    refunded_amount: int = 0
    refunds: tuple[Refund, ...] = ()
    brand: str | None = None
    last4: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None


# --------------------------------------------------------------------------------------------
# Errors


class PaymentProviderError(ProviderError):
    """A failure that is not a business refusal. ``retryable`` tells whether to try again."""


class ProviderUnavailable(PaymentProviderError):
    """Transport error, timeout, 5xx or 429: the call may or may not have happened. Retry, same key."""

    retryable = True


class ProviderRequestError(PaymentProviderError):
    """The provider rejected the request itself (malformed, missing header): a bug, not retryable."""


class PaymentDeclined(BusinessError):
    """The card was declined (``decline_code``: ``card_declined``, ``insufficient_funds``,
    ``authentication_failed``, ``invalid_token`` ...)."""

    status = 402
    title = "Payment declined"

    def __init__(self, detail: str, *, decline_code: str, authorization_id: str | None = None) -> None:
        super().__init__(detail, decline_code=decline_code, authorization_id=authorization_id)
        self.decline_code = decline_code
        self.authorization_id = authorization_id


class InvalidCard(BusinessError):
    """The card details were refused at tokenization (``code``: ``invalid_number``, ``expired_card`` ...)."""

    status = 422
    title = "Invalid card"

    def __init__(self, detail: str, *, code: str, param: str | None = None) -> None:
        super().__init__(detail, code=code, param=param)
        self.code = code
        self.param = param


class PaymentOperationRefused(BusinessError):
    """The authorization's state does not allow the operation (``code``: ``invalid_state``,
    ``amount_exceeds_authorized``, ``refund_exceeds_captured``, ``authorization_expired``)."""

    status = 409
    title = "Payment operation refused"

    def __init__(self, detail: str, *, code: str, authorization_status: str | None = None) -> None:
        super().__init__(detail, code=code, authorization_status=authorization_status)
        self.code = code
        self.authorization_status = authorization_status


class AuthorizationExpired(PaymentOperationRefused):
    title = "Authorization expired"


class PaymentNotFound(NotFound):
    """The provider does not know this authorization."""


# --------------------------------------------------------------------------------------------
# The port


@runtime_checkable
class PaymentProvider(Protocol):
    async def tokenize(self, card: CardDetails) -> CardToken: ...

    async def authorize(
        self,
        *,
        token: str,
        amount: int,
        currency: str,
        reference: str,
        idempotency_key: str,
        webhook_url: str | None = None,
    ) -> Authorization:
        """``authorized`` or ``requires_action`` (outcome later by webhook); raises ``PaymentDeclined``."""
        ...

    async def capture(
        self, authorization_id: str, *, idempotency_key: str, amount: int | None = None
    ) -> Authorization: ...

    async def void(self, authorization_id: str, *, idempotency_key: str) -> Authorization: ...

    async def refund(self, authorization_id: str, *, amount: int, idempotency_key: str) -> Refund: ...

    async def get(self, authorization_id: str) -> Authorization: ...


# --------------------------------------------------------------------------------------------
# PSP sandbox adapter


class PspSandboxProvider(JsonHttpAdapter):
    """:class:`PaymentProvider` for ``sandboxes.psp`` over HTTP (one pooled ``httpx.AsyncClient``).

    Use as an async context manager or call :meth:`aclose`. Besides the port's methods it has a few
    sandbox-only helpers for tests and demos (marked below).
    """

    provider_name = "PSP"
    unavailable = ProviderUnavailable

    @staticmethod
    def _raise_refusal(status: int, problem: dict[str, Any], method: str, path: str) -> NoReturn:
        code = str(problem.get("type", ""))
        detail = str(problem.get("detail") or f"PSP answered {status} to {method} {path}")
        if status == 404:
            raise PaymentNotFound(detail)
        if code == "idempotency_key_reused":
            raise IdempotencyKeyReused(detail, provider="psp")
        if status == 409:
            auth_status = problem.get("authorization_status")
            cls = AuthorizationExpired if code == "authorization_expired" else PaymentOperationRefused
            raise cls(detail, code=code or "conflict", authorization_status=auth_status)
        if status == 422 and code == "invalid_token":
            raise PaymentDeclined(detail, decline_code="invalid_token")
        if status == 422 and code in CARD_ERROR_CODES:
            raise InvalidCard(detail, code=code, param=problem.get("param"))
        raise ProviderRequestError(
            f"PSP refused {method} {path} ({status}): {detail}", status_code=status, problem=problem
        )

    @staticmethod
    def _parse(model: type[_M], body: Any) -> _M:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise ProviderUnavailable(f"PSP answer does not match {model.__name__}: {exc}") from exc

    # -- the port ---------------------------------------------------------------------------------
    async def tokenize(self, card: CardDetails) -> CardToken:
        body = await self._call(
            "POST",
            "/v1/tokens",
            json={
                "number": card.number.get_secret_value(),
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "cvc": card.cvc.get_secret_value(),
            },
        )
        return self._parse(CardToken, body)

    async def authorize(
        self,
        *,
        token: str,
        amount: int,
        currency: str,
        reference: str,
        idempotency_key: str,
        webhook_url: str | None = None,
    ) -> Authorization:
        payload: dict[str, Any] = {
            "token": token,
            "amount": amount,
            "currency": currency,
            "reference": reference,
        }
        if webhook_url is not None:
            payload["webhook_url"] = webhook_url
        body = await self._call("POST", "/v1/authorizations", json=payload, idempotency_key=idempotency_key)
        auth = self._parse(Authorization, body)
        if auth.status == "declined":
            code = auth.decline_code or "declined"
            raise PaymentDeclined(f"card declined ({code})", decline_code=code, authorization_id=auth.id)
        return auth

    async def capture(
        self, authorization_id: str, *, idempotency_key: str, amount: int | None = None
    ) -> Authorization:
        payload = {"amount": amount} if amount is not None else {}
        body = await self._call(
            "POST",
            f"/v1/authorizations/{authorization_id}/capture",
            json=payload,
            idempotency_key=idempotency_key,
        )
        return self._parse(Authorization, body)

    async def void(self, authorization_id: str, *, idempotency_key: str) -> Authorization:
        body = await self._call(
            "POST", f"/v1/authorizations/{authorization_id}/void", idempotency_key=idempotency_key
        )
        return self._parse(Authorization, body)

    async def refund(self, authorization_id: str, *, amount: int, idempotency_key: str) -> Refund:
        body = await self._call(
            "POST",
            f"/v1/authorizations/{authorization_id}/refund",
            json={"amount": amount},
            idempotency_key=idempotency_key,
        )
        return self._parse(Refund, body)

    async def get(self, authorization_id: str) -> Authorization:
        return self._parse(Authorization, await self._call("GET", f"/v1/authorizations/{authorization_id}"))

    # -- sandbox only -----------------------------------------------------------------------------
    async def list_authorizations(self, reference: str | None = None) -> list[Authorization]:
        """Every authorization (of one ``reference``), oldest first."""
        params = {"reference": reference} if reference is not None else None
        body = await self._call("GET", "/v1/authorizations", params=params)
        return [self._parse(Authorization, item) for item in body]

    async def simulate_customer_action(self, authorization_id: str, *, succeed: bool) -> Authorization:
        """Play the shopper finishing (or failing) the extra step of a ``requires_action`` authorization.
        The merchant side learns the outcome by webhook."""
        body = await self._call(
            "POST", f"/v1/authorizations/{authorization_id}/confirm", json={"succeed": succeed}
        )
        return self._parse(Authorization, body)

    async def expire_now(self, authorization_id: str) -> Authorization:
        """Make the authorization expire now instead of after the sandbox's TTL."""
        body = await self._call("POST", f"/_control/authorizations/{authorization_id}/expire")
        return self._parse(Authorization, body)

    async def inject_fault(
        self, operation: FaultOperation, mode: FaultMode, *, count: int = 1, delay_ms: int = 0
    ) -> None:
        """Make the next ``count`` calls of ``operation`` fail, stall, or succeed-then-fail."""
        await self._call(
            "POST",
            "/_control/faults",
            json={"operation": operation, "mode": mode, "count": count, "delay_ms": delay_ms},
        )

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/_control/faults")
