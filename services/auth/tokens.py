"""Access tokens (JWT, HS256) and the opaque tokens kept only as SHA-256 hashes.

Access tokens are short-lived (15 minutes) and self-contained: claims ``sub`` (user id), ``roles``,
``iat``, ``exp`` and ``jti``, signed with ``settings.jwt_secret``. The API verifies them with
``TokenIssuer.verify`` on every request; nothing is stored for them.

Refresh, password reset and email verification tokens are opaque random strings
(``secrets.token_urlsafe(32)``, 256 bits). Only ``hash_token(raw)`` ever reaches the database.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt
from pydantic import BaseModel, ValidationError

from core.errors import BusinessError
from core.settings import Settings

ALGORITHM: Final = "HS256"
ACCESS_TOKEN_TTL: Final = timedelta(minutes=15)
CLOCK_LEEWAY: Final = timedelta(seconds=10)


class InvalidAccessToken(BusinessError):
    """Missing, malformed, badly signed or expired access token."""

    status = 401
    title = "Invalid access token"


class AccessClaims(BaseModel):
    sub: uuid.UUID
    roles: list[str]
    iat: datetime
    exp: datetime
    jti: uuid.UUID


class IssuedAccessToken(BaseModel):
    token: str
    expires_in: int  # seconds
    expires_at: datetime
    jti: uuid.UUID


class TokenIssuer:
    """Issues and verifies access tokens with one HMAC secret."""

    def __init__(self, secret: str, *, ttl: timedelta = ACCESS_TOKEN_TTL) -> None:
        if len(secret.encode()) < 32:
            raise ValueError("JWT_SECRET must be at least 32 bytes for HS256")
        self._secret = secret
        self.ttl = ttl

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenIssuer:
        return cls(settings.jwt_secret.get_secret_value())

    def issue(
        self, user_id: uuid.UUID, roles: list[str], *, now: datetime | None = None
    ) -> IssuedAccessToken:
        issued = (now or datetime.now(UTC)).replace(microsecond=0)
        expires = issued + self.ttl
        jti = uuid.uuid4()
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "roles": sorted(roles),
            "iat": int(issued.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": str(jti),
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return IssuedAccessToken(
            token=token, expires_in=int(self.ttl.total_seconds()), expires_at=expires, jti=jti
        )

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; ``InvalidAccessToken`` for anything else (never says why in detail)."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                leeway=CLOCK_LEEWAY,
                options={"require": ["sub", "roles", "iat", "exp", "jti"]},
            )
            return AccessClaims.model_validate(claims)
        except jwt.ExpiredSignatureError:
            raise InvalidAccessToken("access token expired") from None
        except (jwt.InvalidTokenError, ValidationError):
            raise InvalidAccessToken("access token invalid") from None


def issue_access_token(settings: Settings, user_id: uuid.UUID, roles: list[str]) -> IssuedAccessToken:
    return TokenIssuer.from_settings(settings).issue(user_id, roles)


def verify_access_token(settings: Settings, token: str) -> AccessClaims:
    return TokenIssuer.from_settings(settings).verify(token)


def new_opaque_token() -> str:
    """A fresh random token for the user (refresh / reset / verification). Never store it."""
    return secrets.token_urlsafe(32)


def hash_token(raw: str) -> str:
    """What the database keeps of an opaque token: its SHA-256 hex digest."""
    return hashlib.sha256(raw.encode()).hexdigest()
