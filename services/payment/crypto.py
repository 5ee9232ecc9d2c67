"""Encryption of the provider's card tokens at rest (Fernet, key from ``settings.encryption_key``)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken


class TokenCipher:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def encrypt(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, blob: str) -> str:
        try:
            return self._fernet.decrypt(blob.encode()).decode()
        except InvalidToken as exc:  # a key rotated without re-encrypting: a configuration error
            raise RuntimeError("a stored payment token cannot be decrypted with the current key") from exc
