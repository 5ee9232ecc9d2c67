"""Opaque keyset-pagination cursors.

A cursor is URL-safe base64 of a small JSON document: the sort key of the last row seen, its id, and a
fingerprint of the query it belongs to, followed by a checksum. Decoding refuses anything that is not
byte-for-byte a cursor we issued for the same query (``InvalidCursor``). The checksum guards against
truncation and hand edits; it is not a secret signature (a forged cursor could only seek to another
position of the same public listing).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from services.product.errors import InvalidCursor

_CHECKSUM_KEY = b"sagashop.product.cursor.v1"
_CHECKSUM_BYTES = 12
MAX_CURSOR_LENGTH = 1024


def fingerprint(query: dict[str, Any]) -> str:
    """A short stable hash of the query parameters a cursor is bound to."""
    blob = json.dumps(query, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _checksum(payload: bytes) -> bytes:
    return hmac.new(_CHECKSUM_KEY, payload, hashlib.sha256).digest()[:_CHECKSUM_BYTES]


def encode(query_fingerprint: str, key: list[Any], last_id: str) -> str:
    payload = json.dumps(
        {"f": query_fingerprint, "k": key, "id": last_id}, separators=(",", ":"), sort_keys=True
    ).encode()
    return base64.urlsafe_b64encode(payload + _checksum(payload)).decode().rstrip("=")


def decode(cursor: str, query_fingerprint: str) -> tuple[list[Any], str]:
    """The (sort key, last id) of ``cursor``; ``InvalidCursor`` unless it was issued for this query."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidCursor("the pagination cursor is empty or too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor("the pagination cursor is not valid base64") from None
    payload, check = raw[:-_CHECKSUM_BYTES], raw[-_CHECKSUM_BYTES:]
    if len(raw) <= _CHECKSUM_BYTES or not hmac.compare_digest(check, _checksum(payload)):
        raise InvalidCursor("the pagination cursor was altered or truncated")
    try:
        doc = json.loads(payload)
    except ValueError:
        raise InvalidCursor("the pagination cursor is malformed") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("k"), list) or not isinstance(doc.get("id"), str):
        raise InvalidCursor("the pagination cursor is malformed")
    if doc.get("f") != query_fingerprint:
        raise InvalidCursor("the pagination cursor belongs to a different query or sort order")
    return doc["k"], doc["id"]
