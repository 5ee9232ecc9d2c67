"""The PSP sandbox's rules and state: card tokens and authorizations.

Pure logic, no I/O: every method runs under the runtime's lock, raises :class:`Problem` for a
refusal and reports webhook-worthy changes through ``emit(url, event_type, data)``.

The card number itself is never stored: tokenizing keeps the brand, last 4 digits, expiry, a salted
fingerprint and the test-card behaviour, which is all the sandbox needs later.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl, field_validator

from sandboxes import Problem, isoformat, new_id

Emit = Callable[[str, str, dict[str, Any]], None]

AuthorizationStatus = Literal[
    "requires_action", "authorized", "declined", "voided", "captured", "refunded", "expired"
]
Behaviour = Literal["authorize", "decline", "requires_action"]


class TestCard(BaseModel):
    behaviour: Behaviour
    decline_code: str | None = None


# The test cards, as the big providers document them. Any other valid number is authorized.
TEST_CARDS: dict[str, TestCard] = {
    "4242424242424242": TestCard(behaviour="authorize"),
    "5555555555554444": TestCard(behaviour="authorize"),
    "4000000000000002": TestCard(behaviour="decline", decline_code="card_declined"),
    "4000000000009995": TestCard(behaviour="decline", decline_code="insufficient_funds"),
    "4000000000000069": TestCard(behaviour="decline", decline_code="expired_card"),
    "4000000000000127": TestCard(behaviour="decline", decline_code="incorrect_cvc"),
    "4000000000003220": TestCard(behaviour="requires_action"),
}
AUTHENTICATION_FAILED = "authentication_failed"
MAX_AMOUNT = 99_999_999


# --------------------------------------------------------------------------------------------
# Requests


class TokenRequest(BaseModel):
    number: str = Field(min_length=1, max_length=40)
    exp_month: int
    exp_year: int
    cvc: str = Field(min_length=1, max_length=8)


class AuthorizeRequest(BaseModel):
    token: str = Field(min_length=1, max_length=100)
    amount: int = Field(gt=0, le=MAX_AMOUNT, description="minor units")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217, upper case")
    reference: str = Field(min_length=1, max_length=200)
    webhook_url: HttpUrl | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _strict_int(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("amount must be an integer number of minor units")
        return value


class ConfirmRequest(BaseModel):
    succeed: bool


class CaptureRequest(BaseModel):
    amount: int | None = Field(default=None, gt=0, le=MAX_AMOUNT)


class RefundRequest(BaseModel):
    amount: int = Field(gt=0, le=MAX_AMOUNT)


# --------------------------------------------------------------------------------------------
# Records


class CardToken(BaseModel):
    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str
    behaviour: Behaviour
    decline_code: str | None = None
    created_at: str

    def public(self) -> dict[str, Any]:
        return self.model_dump(include={"token", "brand", "last4", "exp_month", "exp_year", "fingerprint"})


class RefundRecord(BaseModel):
    id: str
    authorization_id: str
    amount: int
    currency: str
    status: Literal["succeeded"] = "succeeded"
    created_at: str


class AuthorizationRecord(BaseModel):
    id: str
    status: AuthorizationStatus
    amount: int
    currency: str
    reference: str
    token: str
    brand: str
    last4: str
    decline_code: str | None = None
    next_action: dict[str, Any] | None = None
    captured_amount: int = 0
    refunded_amount: int = 0
    refunds: list[RefundRecord] = Field(default_factory=list)
    webhook_url: str | None = None
    created_at: str
    expires_at: str
    expires_at_ts: float

    def public(self) -> dict[str, Any]:
        return self.model_dump(exclude={"expires_at_ts"})


# --------------------------------------------------------------------------------------------
# Card checks


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if re.match(r"^(5[1-5]|2(2[2-9]|[3-6]\d|7[01]|720))", number):
        return "mastercard"
    if re.match(r"^3[47]", number):
        return "amex"
    if re.match(r"^(6011|65|64[4-9])", number):
        return "discover"
    return "unknown"


def _card_error(code: str, detail: str, param: str) -> Problem:
    return Problem(422, code, "Invalid card", detail, param=param)


# --------------------------------------------------------------------------------------------
# State


class PspState:
    def __init__(self, *, auth_ttl_s: float, emit: Emit, clock: Callable[[], float] = time.time) -> None:
        self.auth_ttl_s = auth_ttl_s
        self.emit = emit
        self.clock = clock
        self.tokens: dict[str, CardToken] = {}
        self.authorizations: dict[str, AuthorizationRecord] = {}
        self.fingerprint_salt = secrets.token_hex(16)

    # -- persistence --------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {
            "fingerprint_salt": self.fingerprint_salt,
            "tokens": [t.model_dump() for t in self.tokens.values()],
            "authorizations": [a.model_dump() for a in self.authorizations.values()],
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.fingerprint_salt = data["fingerprint_salt"]
        self.tokens = {t["token"]: CardToken.model_validate(t) for t in data["tokens"]}
        self.authorizations = {a["id"]: AuthorizationRecord.model_validate(a) for a in data["authorizations"]}

    # -- tokens -------------------------------------------------------------------------------
    def tokenize(self, req: TokenRequest) -> dict[str, Any]:
        number = re.sub(r"[\s-]", "", req.number)
        if not number.isdigit() or not 12 <= len(number) <= 19:
            raise _card_error("invalid_number", "the card number must be 12 to 19 digits", "number")
        if not luhn_ok(number):
            raise _card_error("invalid_number", "the card number fails the Luhn check", "number")
        if not 1 <= req.exp_month <= 12:
            raise _card_error("invalid_expiry_month", "exp_month must be 1 to 12", "exp_month")
        exp_year = req.exp_year + 2000 if 0 <= req.exp_year < 100 else req.exp_year
        now = datetime.fromtimestamp(self.clock(), UTC)
        if not 2000 <= exp_year <= now.year + 50:
            raise _card_error(
                "invalid_expiry_year", f"exp_year {req.exp_year} is not a valid year", "exp_year"
            )
        if (exp_year, req.exp_month) < (now.year, now.month):
            raise _card_error(
                "expired_card", f"the card expired at the end of {req.exp_month:02d}/{exp_year}", "exp_year"
            )
        brand = card_brand(number)
        cvc_len = 4 if brand == "amex" else 3
        if not (req.cvc.isdigit() and len(req.cvc) == cvc_len):
            raise _card_error("invalid_cvc", f"the security code must be {cvc_len} digits", "cvc")
        test = TEST_CARDS.get(number, TestCard(behaviour="authorize"))
        fp = hmac.new(self.fingerprint_salt.encode(), number.encode(), hashlib.sha256).hexdigest()[:16]
        token = CardToken(
            token=new_id("tok"),
            brand=brand,
            last4=number[-4:],
            exp_month=req.exp_month,
            exp_year=exp_year,
            fingerprint=fp,
            behaviour=test.behaviour,
            decline_code=test.decline_code,
            created_at=isoformat(self.clock()),
        )
        self.tokens[token.token] = token
        return token.public()

    # -- authorizations -----------------------------------------------------------------------
    def _get(self, authorization_id: str) -> AuthorizationRecord:
        auth = self.authorizations.get(authorization_id)
        if auth is None:
            raise Problem(
                404, "not_found", "Not found", f"no authorization {authorization_id!r}", replayable=False
            )
        return auth

    def _notify(self, auth: AuthorizationRecord, event_type: str) -> None:
        if auth.webhook_url:
            self.emit(auth.webhook_url, event_type, auth.public())

    def expire_due(self) -> list[str]:
        """Expire every authorization past its time that was never captured; return their ids."""
        now = self.clock()
        expired = []
        for auth in self.authorizations.values():
            if auth.status in ("authorized", "requires_action") and now >= auth.expires_at_ts:
                auth.status = "expired"
                auth.next_action = None
                expired.append(auth.id)
                self._notify(auth, "authorization.expired")
        return expired

    def expire_now(self, authorization_id: str) -> dict[str, Any]:
        """Bring the expiry time forward to now and expire it if it is still open."""
        auth = self._get(authorization_id)
        now = self.clock()
        if auth.expires_at_ts > now:
            auth.expires_at_ts = now
            auth.expires_at = isoformat(now)
        self.expire_due()
        return auth.public()

    def authorize(self, req: AuthorizeRequest, *, base_url: str) -> dict[str, Any]:
        card = self.tokens.get(req.token)
        if card is None:
            raise Problem(
                422, "invalid_token", "Unknown card token", f"no card token {req.token!r}", param="token"
            )
        now = self.clock()
        auth_id = new_id("auth")
        auth = AuthorizationRecord(
            id=auth_id,
            status="authorized",
            amount=req.amount,
            currency=req.currency,
            reference=req.reference,
            token=card.token,
            brand=card.brand,
            last4=card.last4,
            webhook_url=str(req.webhook_url) if req.webhook_url else None,
            created_at=isoformat(now),
            expires_at=isoformat(now + self.auth_ttl_s),
            expires_at_ts=now + self.auth_ttl_s,
        )
        if card.behaviour == "decline":
            auth.status = "declined"
            auth.decline_code = card.decline_code
        elif card.behaviour == "requires_action":
            auth.status = "requires_action"
            confirm = f"/v1/authorizations/{auth_id}/confirm"
            auth.next_action = {"type": "three_d_secure", "url": base_url.rstrip("/") + confirm}
        self.authorizations[auth_id] = auth
        return auth.public()

    def get(self, authorization_id: str) -> dict[str, Any]:
        return self._get(authorization_id).public()

    def list_authorizations(self, reference: str | None) -> list[dict[str, Any]]:
        return [
            a.public() for a in self.authorizations.values() if reference is None or a.reference == reference
        ]

    def _invalid_state(self, auth: AuthorizationRecord, action: str) -> Problem:
        if auth.status == "expired":
            return Problem(
                409,
                "authorization_expired",
                "Authorization expired",
                f"authorization {auth.id} expired at {auth.expires_at}; it cannot be {action}",
                authorization_status=auth.status,
            )
        return Problem(
            409,
            "invalid_state",
            "Invalid state transition",
            f"authorization {auth.id} is {auth.status}; it cannot be {action}",
            authorization_status=auth.status,
        )

    def confirm(self, authorization_id: str, req: ConfirmRequest) -> dict[str, Any]:
        """The shopper finished (or failed) the extra step; the merchant hears it by webhook."""
        self.expire_due()
        auth = self._get(authorization_id)
        if auth.status != "requires_action":
            raise self._invalid_state(auth, "confirmed")
        auth.next_action = None
        if req.succeed:
            auth.status = "authorized"
            self._notify(auth, "authorization.succeeded")
        else:
            auth.status = "declined"
            auth.decline_code = AUTHENTICATION_FAILED
            self._notify(auth, "authorization.failed")
        return auth.public()

    def capture(self, authorization_id: str, req: CaptureRequest) -> dict[str, Any]:
        self.expire_due()
        auth = self._get(authorization_id)
        if auth.status != "authorized":
            raise self._invalid_state(auth, "captured")
        amount = auth.amount if req.amount is None else req.amount
        if amount > auth.amount:
            raise Problem(
                409,
                "amount_exceeds_authorized",
                "Amount exceeds authorization",
                f"capture of {amount} exceeds the authorized {auth.amount}",
                authorization_status=auth.status,
            )
        auth.status = "captured"
        auth.captured_amount = amount
        self._notify(auth, "authorization.captured")
        return auth.public()

    def void(self, authorization_id: str) -> dict[str, Any]:
        self.expire_due()
        auth = self._get(authorization_id)
        if auth.status not in ("authorized", "requires_action"):
            raise self._invalid_state(auth, "voided")
        auth.status = "voided"
        auth.next_action = None
        self._notify(auth, "authorization.voided")
        return auth.public()

    def refund(self, authorization_id: str, req: RefundRequest) -> dict[str, Any]:
        auth = self._get(authorization_id)
        if auth.status not in ("captured", "refunded"):
            raise self._invalid_state(auth, "refunded")
        remaining = auth.captured_amount - auth.refunded_amount
        if req.amount > remaining:
            raise Problem(
                409,
                "refund_exceeds_captured",
                "Refund exceeds captured amount",
                f"refund of {req.amount} exceeds the {remaining} still refundable "
                f"(captured {auth.captured_amount}, refunded {auth.refunded_amount})",
                authorization_status=auth.status,
                refundable_amount=remaining,
            )
        refund = RefundRecord(
            id=new_id("re"),
            authorization_id=auth.id,
            amount=req.amount,
            currency=auth.currency,
            created_at=isoformat(self.clock()),
        )
        auth.refunds.append(refund)
        auth.refunded_amount += req.amount
        if auth.refunded_amount == auth.captured_amount:
            auth.status = "refunded"
        self._notify(auth, "authorization.refunded")
        return refund.model_dump()
