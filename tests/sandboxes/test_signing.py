from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import SecretStr

from sandboxes.signing import InvalidSignature, compute_signature, sign, verify

SECRET = "whsec-test"
BODY = b'{"id":"evt_1","type":"authorization.succeeded"}'
NOW = 1_750_000_000


def test_header_is_t_and_hex_hmac_of_timestamp_dot_body() -> None:
    header = sign(SECRET, BODY, timestamp=NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"
    assert compute_signature(SECRET, NOW, BODY) == expected


def test_valid_signature_verifies_and_returns_timestamp() -> None:
    header = sign(SECRET, BODY, timestamp=NOW)
    assert verify(SECRET, BODY, header, now=NOW + 10) == NOW
    # bytes and SecretStr secrets are the same key
    assert verify(SECRET.encode(), BODY, header, now=NOW) == NOW
    assert verify(SecretStr(SECRET), BODY, header, now=NOW) == NOW


@pytest.mark.parametrize(
    ("secret", "body", "reason"),
    [
        ("other-secret", BODY, "does not match"),
        (SECRET, BODY + b" ", "does not match"),
        (SECRET, BODY.replace(b"succeeded", b"failed"), "does not match"),
    ],
)
def test_wrong_secret_or_changed_body_is_refused(secret: str, body: bytes, reason: str) -> None:
    header = sign(SECRET, BODY, timestamp=NOW)
    with pytest.raises(InvalidSignature) as exc:
        verify(secret, body, header, now=NOW)
    assert reason in exc.value.reason


def test_timestamp_outside_tolerance_is_refused_both_ways() -> None:
    header = sign(SECRET, BODY, timestamp=NOW)
    assert verify(SECRET, BODY, header, now=NOW + 300) == NOW  # edge of the default window
    with pytest.raises(InvalidSignature, match="too old"):
        verify(SECRET, BODY, header, now=NOW + 301)
    with pytest.raises(InvalidSignature, match="future"):
        verify(SECRET, BODY, header, now=NOW - 301)
    assert verify(SECRET, BODY, header, now=NOW + 1000, tolerance_s=1000) == NOW


def test_a_changed_timestamp_breaks_the_signature() -> None:
    signature = compute_signature(SECRET, NOW, BODY)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(SECRET, BODY, f"t={NOW + 1},v1={signature}", now=NOW)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "malformed"),
        (f"v1={'0' * 64}", "no timestamp"),
        (f"t={NOW}", "no v1"),
        (f"t=soon,v1={'0' * 64}", "not an integer"),
        (f"t={NOW},t={NOW},v1={'0' * 64}", "more than one timestamp"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(header: str | None, reason: str) -> None:
    with pytest.raises(InvalidSignature) as exc:
        verify(SECRET, BODY, header, now=NOW)
    assert reason in exc.value.reason


def test_any_matching_v1_is_enough_for_secret_rotation() -> None:
    old, new = compute_signature("old-secret", NOW, BODY), compute_signature("new-secret", NOW, BODY)
    header = f"t={NOW},v1={old},v1={new},v0=ignored"
    assert verify("new-secret", BODY, header, now=NOW) == NOW
    assert verify("old-secret", BODY, header, now=NOW) == NOW
    with pytest.raises(InvalidSignature):
        verify("third-secret", BODY, header, now=NOW)


def test_empty_secret_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        sign("", BODY)
