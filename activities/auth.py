"""Activities of the auth service, served on task queue ``auth`` by ``python worker.py auth``.

Tokens and replays: the raw verification / reset token is returned once and never stored (only its
SHA-256 hash is), so the ledger keeps the result *without* it. When a step runs again with the same
idempotency key (the worker died after the commit), the effect is not repeated - same user, same
result fields - but a fresh token is issued and the unreported one superseded.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, EmailStr, Field, StringConstraints, model_validator
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from core.activity_support import business_errors, idempotent_write
from core.crypto import TokenCipher
from core.db import SessionFactory
from core.ledger import run_once
from core.settings import Settings
from services.auth import service
from services.auth.models import ledger

TASK_QUEUE = "auth"

S = TypeVar("S", bound=BaseModel)
# "<workflow id>:<step>"
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


# --- contract ----------------------------------------------------------------------------------


class CreateUserInput(BaseModel):
    idempotency_key: IdempotencyKey
    user_id: uuid.UUID  # chosen by the workflow
    email: EmailStr
    # Exactly one of: the raw password (checked against the policy), or an argon2id hash made by
    # services.auth.passwords.hash_password - preferable, the raw password then never enters history.
    password: str | None = Field(default=None, min_length=1, max_length=256, repr=False)
    password_hash: str | None = Field(default=None, max_length=255, repr=False)
    first_name: Name
    last_name: Name
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=1024)
    # Given: the result carries the verification link (this + the token) encrypted, not the token.
    link_prefix: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _one_password(self) -> CreateUserInput:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError("give exactly one of password or password_hash")
        return self


class _CreateUserFingerprint(BaseModel):
    """What the ledger fingerprints of a CreateUserInput: never the password (a fast hash of it in
    the ledger would undo argon2)."""

    user_id: uuid.UUID
    email: str
    first_name: str
    last_name: str


class _CreateUserRecord(BaseModel):
    user_id: uuid.UUID
    email: str


class CreateUserResult(BaseModel):
    """The verification secret, to be emailed (only its hash is stored): the link encrypted with
    ENCRYPTION_KEY when the input gave ``link_prefix`` (nothing usable in the workflow's history; the
    notification service decrypts it), else the raw token (inputs from before the encrypted link)."""

    user_id: uuid.UUID
    email: str
    verification_token: str | None = None
    verification_link_encrypted: str | None = None


class DeleteUserInput(BaseModel):
    idempotency_key: IdempotencyKey
    user_id: uuid.UUID


class DeleteUserResult(BaseModel):
    user_id: uuid.UUID
    deleted: bool  # False: there was no such user (already compensated, or never created)


class IssueEmailVerificationInput(BaseModel):
    idempotency_key: IdempotencyKey
    user_id: uuid.UUID


class _IssuedRecord(BaseModel):
    user_id: uuid.UUID | None = None
    first_name: str | None = None  # the greeting of the reset mail (ledger rows from before: none)


class IssueEmailVerificationResult(BaseModel):
    token: str


class RequestPasswordResetInput(BaseModel):
    idempotency_key: IdempotencyKey
    email: str = Field(min_length=1, max_length=320)  # any string: an unknown email is not an error
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=1024)
    # Given: the result carries the reset link (this + the token) encrypted, not the token.
    link_prefix: str | None = Field(default=None, max_length=2000)


class RequestPasswordResetResult(BaseModel):
    """All None when no active account has the email (the caller answers the same way). The secret
    as for CreateUserResult: the link encrypted when the input gave ``link_prefix``, else the token."""

    user_id: uuid.UUID | None = None
    token: str | None = None
    link_encrypted: str | None = None
    first_name: str | None = None


class EnsurePartitionsInput(BaseModel):
    months_ahead: int = Field(default=3, ge=0, le=24)


class EnsurePartitionsResult(BaseModel):
    created: list[str]
    dropped: list[str] = []  # older than AUDIT_LOG_RETENTION_MONTHS


# --- activities --------------------------------------------------------------------------------


class AuthActivities:
    """Adapts ``services.auth`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        audit_log_retention_months: int = 0,
        cipher: TokenCipher | None = None,
    ) -> None:
        self.sessions = sessions
        self.audit_log_retention_months = audit_log_retention_months
        self.cipher = cipher  # encrypts one-time links for inputs with link_prefix

    def _can_encrypt(self, link_prefix: str | None) -> None:
        """Before any effect: a worker without the key must not issue a token it cannot hand over."""
        if link_prefix is not None and self.cipher is None:
            raise RuntimeError("AuthActivities needs a TokenCipher to encrypt one-time links")

    def _link(self, prefix: str, token: str) -> str:
        self._can_encrypt(prefix)
        assert self.cipher is not None
        return self.cipher.encrypt(prefix + token)

    async def _write_with_secret(
        self,
        *,
        key: str,
        operation: str,
        request: BaseModel,
        record_type: type[S],
        effect: Callable[[AsyncSession], Awaitable[tuple[S, str | None]]],
        reissue: Callable[[AsyncSession, S], Awaitable[str | None]],
    ) -> tuple[S, str | None]:
        """Like ``idempotent_write`` for effects that produce a secret: the ledger keeps ``record``,
        the secret is returned from the first run, and re-issued by ``reissue`` on a replay."""
        with business_errors():
            async with self.sessions() as session, session.begin():
                produced: list[str | None] = []

                async def run() -> S:
                    record, secret = await effect(session)
                    produced.append(secret)
                    return record

                record = await run_once(
                    session,
                    ledger,
                    key=key,
                    operation=operation,
                    request=request,
                    result_type=record_type,
                    effect=run,
                )
                secret = produced[0] if produced else await reissue(session, record)
                return record, secret

    @activity.defn(name="auth.create_user")
    async def create_user(self, inp: CreateUserInput) -> CreateUserResult:
        """Create the account (role customer) and its first email verification token.
        Refuses an email already registered with ``EmailAlreadyRegistered``."""
        self._can_encrypt(inp.link_prefix)

        async def effect(s: AsyncSession) -> tuple[_CreateUserRecord, str | None]:
            created = await service.register_user(
                s,
                user_id=inp.user_id,
                email=inp.email,
                first_name=inp.first_name,
                last_name=inp.last_name,
                password=inp.password,
                password_hash=inp.password_hash,
                ip=inp.ip,
                user_agent=inp.user_agent,
            )
            return _CreateUserRecord(user_id=created.user_id, email=created.email), created.verification_token

        async def reissue(s: AsyncSession, record: _CreateUserRecord) -> str | None:
            return await service.issue_email_verification(s, record.user_id)

        record, token = await self._write_with_secret(
            key=inp.idempotency_key,
            operation="auth.create_user",
            request=_CreateUserFingerprint.model_validate(inp.model_dump()),
            record_type=_CreateUserRecord,
            effect=effect,
            reissue=reissue,
        )
        assert token is not None
        if inp.link_prefix is not None:
            return CreateUserResult(
                user_id=record.user_id,
                email=record.email,
                verification_link_encrypted=self._link(inp.link_prefix, token),
            )
        return CreateUserResult(user_id=record.user_id, email=record.email, verification_token=token)

    @activity.defn(name="auth.delete_user")
    async def delete_user(self, inp: DeleteUserInput) -> DeleteUserResult:
        """Compensation of ``auth.create_user``: removes the account with its roles and tokens."""

        async def effect(s: AsyncSession) -> DeleteUserResult:
            return DeleteUserResult(user_id=inp.user_id, deleted=await service.delete_user(s, inp.user_id))

        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="auth.delete_user",
            request=inp,
            result_type=DeleteUserResult,
            effect=effect,
        )

    @activity.defn(name="auth.issue_email_verification")
    async def issue_email_verification(
        self, inp: IssueEmailVerificationInput
    ) -> IssueEmailVerificationResult:
        """A new verification token (earlier pending ones stop working). ``UserNotFound``,
        ``EmailAlreadyVerified``."""

        async def effect(s: AsyncSession) -> tuple[_IssuedRecord, str | None]:
            return _IssuedRecord(user_id=inp.user_id), await service.issue_email_verification(s, inp.user_id)

        async def reissue(s: AsyncSession, record: _IssuedRecord) -> str | None:
            return await service.issue_email_verification(s, inp.user_id)

        _, token = await self._write_with_secret(
            key=inp.idempotency_key,
            operation="auth.issue_email_verification",
            request=inp,
            record_type=_IssuedRecord,
            effect=effect,
            reissue=reissue,
        )
        assert token is not None
        return IssueEmailVerificationResult(token=token)

    @activity.defn(name="auth.request_password_reset")
    async def request_password_reset(self, inp: RequestPasswordResetInput) -> RequestPasswordResetResult:
        """A reset token for the active account with this email; nulls when there is none."""
        self._can_encrypt(inp.link_prefix)

        async def effect(s: AsyncSession) -> tuple[_IssuedRecord, str | None]:
            issued = await service.request_password_reset(s, inp.email, ip=inp.ip, user_agent=inp.user_agent)
            return _IssuedRecord(user_id=issued.user_id, first_name=issued.first_name), issued.token

        async def reissue(s: AsyncSession, record: _IssuedRecord) -> str | None:
            if record.user_id is None:
                return None
            again = await service.reissue_password_reset(
                s, record.user_id, ip=inp.ip, user_agent=inp.user_agent
            )
            return again.token

        record, token = await self._write_with_secret(
            key=inp.idempotency_key,
            operation="auth.request_password_reset",
            request=inp,
            record_type=_IssuedRecord,
            effect=effect,
            reissue=reissue,
        )
        if token is None:
            return RequestPasswordResetResult()
        if inp.link_prefix is not None:
            return RequestPasswordResetResult(
                user_id=record.user_id,
                link_encrypted=self._link(inp.link_prefix, token),
                first_name=record.first_name,
            )
        return RequestPasswordResetResult(user_id=record.user_id, token=token, first_name=record.first_name)

    @activity.defn(name="auth.ensure_partitions")
    async def ensure_partitions(self, inp: EnsurePartitionsInput) -> EnsurePartitionsResult:
        """Create the monthly partitions of security_audit_logs up to ``months_ahead`` months ahead
        (idempotent by nature: existing partitions are left alone) and drop those past the retention
        (AUDIT_LOG_RETENTION_MONTHS). The names created and dropped now."""
        with business_errors():
            async with self.sessions() as session, session.begin():
                created = await service.ensure_audit_partitions(session, months_ahead=inp.months_ahead)
            async with self.sessions() as session, session.begin():
                dropped = await service.drop_expired_audit_partitions(
                    session, keep_months=self.audit_log_retention_months
                )
        return EnsurePartitionsResult(created=created, dropped=dropped)


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py auth`` registers (besides ``auth.ping``)."""
    acts = AuthActivities(
        sessions,
        audit_log_retention_months=settings.audit_log_retention_months,
        cipher=TokenCipher.from_settings(settings),
    )
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
