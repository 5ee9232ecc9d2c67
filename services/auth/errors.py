"""Refusals of the auth service (the class name is the stable error ``type``)."""

from __future__ import annotations

from typing import Any

from core.errors import BusinessError, Conflict, InvalidRequest, NotFound


class EmailAlreadyRegistered(Conflict):
    title = "Email already registered"


class UserAlreadyExists(Conflict):
    """The user id chosen by the workflow is already taken (by another registration)."""

    title = "User id already exists"


class UserNotFound(NotFound):
    title = "User not found"


class UnknownRole(InvalidRequest):
    title = "Unknown role"


class InvalidEmail(InvalidRequest):
    title = "Invalid email address"


class PasswordInputInvalid(InvalidRequest):
    """Neither or both of password / password_hash, or a password_hash that is not argon2id."""

    title = "Invalid password input"


class WeakPassword(InvalidRequest):
    title = "Password does not meet the policy"


class EmailAlreadyVerified(Conflict):
    title = "Email already verified"


class InvalidCredentials(BusinessError):
    """Wrong email or password (deliberately not saying which)."""

    status = 401
    title = "Invalid credentials"


class RateLimited(BusinessError):
    """Too many failed attempts for this account or address; retry after ``retry_after_seconds``."""

    status = 429
    title = "Too many attempts"

    def __init__(self, detail: str, *, retry_after_seconds: int, **context: Any) -> None:
        super().__init__(detail, retry_after_seconds=retry_after_seconds, **context)
        self.retry_after_seconds = retry_after_seconds


class InvalidRefreshToken(BusinessError):
    """Unknown, expired or revoked refresh token."""

    status = 401
    title = "Invalid refresh token"


class RefreshTokenReused(BusinessError):
    """An already rotated refresh token was presented: its whole session family has been revoked."""

    status = 401
    title = "Refresh token reuse detected"


class InvalidVerificationToken(BusinessError):
    status = 400
    title = "Invalid or expired verification token"


class InvalidResetToken(BusinessError):
    status = 400
    title = "Invalid or expired password reset token"
