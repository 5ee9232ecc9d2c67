"""Results of the auth service's operations (pydantic, no tables)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

from core.errors import BusinessError

T = TypeVar("T")


class TokenPair(BaseModel):
    """What a login or a refresh hands to the client (the REST contract's login response)."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int  # seconds of validity of the access token
    refresh_token_expires_at: datetime


class RegisteredUser(BaseModel):
    user_id: uuid.UUID
    email: str
    verification_token: str  # raw, returned once so it can be emailed; only its hash is stored


class PasswordResetIssued(BaseModel):
    """``user_id`` and ``token`` are both None when no active account has the email (nothing leaks)."""

    user_id: uuid.UUID | None = None
    token: str | None = None
    first_name: str | None = None  # for the mail's greeting


class UserView(BaseModel):
    id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    status: str
    roles: list[str]
    email_verified_at: datetime | None
    locked_until: datetime | None
    last_login_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """The result of an operation that must persist what it did even when it refuses the request.

    ``login`` and ``refresh`` write audit rows, failure counters, locks and family revocations on
    their refusal paths. Raising inside the caller's transaction would roll those back, so they return
    an Outcome instead: commit the transaction first, then call ``unwrap()`` (which raises the
    refusal)::

        async with sessions() as s, s.begin():
            outcome = await service.login(s, issuer, email=..., password=..., ip=..., user_agent=...)
        tokens = outcome.unwrap()
    """

    value: T | None = None
    error: BusinessError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> T:
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value
