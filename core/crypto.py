"""Encryption at rest of short secrets, the PSP card tokens in ``user_db.payment_methods`` and
``payment_db.payment_methods`` (Fernet: AES-128-CBC + HMAC-SHA256). Each service encrypts its own
rows with this one implementation.

The key is ``settings.encryption_key`` (``ENCRYPTION_KEY``). Key rotation: give several keys separated
by commas, newest first - the first encrypts, all of them decrypt (``MultiFernet``).
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from core.settings import Settings


class EncryptionKeyError(ValueError):
    """The configured key is not a Fernet key."""


class DecryptionError(RuntimeError):
    """A ciphertext that the configured key(s) cannot decrypt: wrong or rotated-away key, or tampering.

    Not a business refusal: an operator fixes the key and the retried activity succeeds."""


class TokenCipher:
    """Encrypts and decrypts short secrets (PSP tokens) with one or more Fernet keys."""

    def __init__(self, keys: str | bytes | Sequence[str | bytes]) -> None:
        if isinstance(keys, str):
            keys = [k.strip() for k in keys.split(",") if k.strip()]
        elif isinstance(keys, bytes):
            keys = [keys]
        if not keys:
            raise EncryptionKeyError("ENCRYPTION_KEY is empty; generate one with Fernet.generate_key()")
        fernets: list[Fernet] = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError, binascii.Error):
                raise EncryptionKeyError(
                    f"ENCRYPTION_KEY (key #{position}) is not a valid Fernet key: it must be 32 url-safe "
                    "base64-encoded bytes, as made by cryptography.fernet.Fernet.generate_key()"
                ) from None
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCipher:
        return cls(settings.encryption_key.get_secret_value())

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise DecryptionError(
                "cannot decrypt a value encrypted with ENCRYPTION_KEY (a card token or a one-time link) "
                "(wrong key, or a key rotated away without keeping the old one second in the list?)"
            ) from None
