"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<raw body>"``.

The sandboxes sign every webhook they send; the API's webhook endpoints verify them. The header
value has the same shape for the PSP (``Psp-Signature``) and the carrier (``Carrier-Signature``)::

    t=1735689600,v1=5f2c...e1

``v1`` is the lowercase hex HMAC-SHA256 of ``f"{t}.".encode() + raw_body`` keyed with the shared
secret. A header may carry several ``v1`` entries (a sender rotating its secret signs with both);
one match is enough. The timestamp bounds replays: a signature older (or further in the future)
than the tolerance is refused, so a captured request cannot be replayed later.

Verify against the *raw* request bytes, before any JSON parsing: re-serialising changes the bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from pydantic import SecretStr

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SCHEME",
    "InvalidSignature",
    "Secret",
    "compute_signature",
    "sign",
    "verify",
]

DEFAULT_TOLERANCE_S = 300
SCHEME = "v1"

Secret = str | bytes | SecretStr


class InvalidSignature(Exception):
    """The webhook signature is missing, malformed, stale or does not match. ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _key(secret: Secret) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not secret:
        raise ValueError("webhook secret must not be empty")
    return secret


def compute_signature(secret: Secret, timestamp: int, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    signed = str(int(timestamp)).encode("ascii") + b"." + body
    return hmac.new(_key(secret), signed, hashlib.sha256).hexdigest()


def sign(secret: Secret, body: bytes, timestamp: int | None = None) -> str:
    """The signature header value for ``body``: ``t=<unix ts>,v1=<hex>``. ``timestamp`` defaults to now."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={ts},{SCHEME}={compute_signature(secret, ts, body)}"


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise InvalidSignature(f"malformed signature header element {part.strip()!r}")
        if key == "t":
            if timestamp is not None:
                raise InvalidSignature("signature header has more than one timestamp")
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature(f"signature timestamp {value!r} is not an integer") from None
        elif key == SCHEME:
            signatures.append(value)
        # Unknown schemes (v0, a future v2 ...) are ignored, as the big providers do.
    if timestamp is None:
        raise InvalidSignature("signature header has no timestamp (t=...)")
    if not signatures:
        raise InvalidSignature(f"signature header has no {SCHEME} signature")
    return timestamp, signatures


def verify(
    secret: Secret,
    body: bytes,
    header: str | None,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check ``header`` against the raw ``body``; return the signed timestamp.

    Raises :class:`InvalidSignature` if the header is missing or malformed, the timestamp is more
    than ``tolerance_s`` seconds away from ``now`` (either direction), or no ``v1`` entry matches.
    The comparison is constant-time.
    """
    if not header or not header.strip():
        raise InvalidSignature("missing signature header")
    timestamp, signatures = _parse(header)
    current = time.time() if now is None else now
    age = current - timestamp
    if age > tolerance_s:
        raise InvalidSignature(f"signature timestamp is too old ({int(age)} s > {tolerance_s} s tolerance)")
    if -age > tolerance_s:
        raise InvalidSignature(
            f"signature timestamp is in the future ({int(-age)} s > {tolerance_s} s tolerance)"
        )
    expected = compute_signature(secret, timestamp, body)
    # Check every candidate (no early exit) so timing does not reveal which one matched.
    matched = False
    for candidate in signatures:
        if hmac.compare_digest(
            expected.encode("ascii"), candidate.strip().lower().encode("ascii", "replace")
        ):
            matched = True
    if not matched:
        raise InvalidSignature("signature does not match the payload")
    return timestamp
