"""The auth service's rules: accounts, credentials, sessions (refresh token families), one-time tokens,
roles, login throttling and the security audit trail. Never commits: the caller owns the transaction.

``login`` and ``refresh`` return an :class:`~services.auth.schemas.Outcome` instead of raising their
refusals, because the refusal paths write rows (audit, counters, locks, family revocation) that must
be committed. Every other function raises its refusal and writes nothing in that case.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.partitions import (
    add_months,
    drop_partitions,
    expired_monthly_partitions,
    month_start,
    monthly_partition_ddl,
    monthly_partition_name,
    partition_names,
)
from services.auth import passwords
from services.auth import repository as repo
from services.auth.errors import (
    EmailAlreadyRegistered,
    EmailAlreadyVerified,
    InvalidCredentials,
    InvalidEmail,
    InvalidRefreshToken,
    InvalidResetToken,
    InvalidVerificationToken,
    PasswordInputInvalid,
    RateLimited,
    RefreshTokenReused,
    UnknownRole,
    UserAlreadyExists,
    UserNotFound,
)
from services.auth.models import (
    AuditEvent,
    EmailVerificationToken,
    OneTimeTokenStatus,
    PasswordResetToken,
    RefreshTokenStatus,
    RevokeReason,
    RoleName,
    User,
)
from services.auth.schemas import Outcome, PasswordResetIssued, RegisteredUser, TokenPair, UserView
from services.auth.tokens import TokenIssuer, hash_token, new_opaque_token

AUDIT_PARENT: Final = "security_audit_logs"

# rate_limits scopes
SCOPE_LOGIN_ACCOUNT: Final = "login_failed_account"  # key: normalized email (known or not)
SCOPE_LOGIN_IP: Final = "login_failed_ip"  # key: client IP address


@dataclass(frozen=True)
class AuthPolicy:
    """Tunable limits and lifetimes (tests shrink them; production keeps the defaults)."""

    login_window: timedelta = timedelta(minutes=15)
    max_failed_per_account: int = 5  # failures per window per email, and consecutive failures to lock
    max_failed_per_ip: int = 20  # failures per window per client address, across accounts
    lockout: timedelta = timedelta(minutes=15)
    refresh_ttl: timedelta = timedelta(days=30)
    verification_ttl: timedelta = timedelta(hours=48)
    reset_ttl: timedelta = timedelta(hours=1)


DEFAULT_POLICY: Final = AuthPolicy()


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_email(email: str) -> str:
    """The stored form of an email: trimmed and lower-cased (the check constraint of users.email)."""
    return email.strip().lower()


def validated_email(email: str) -> str:
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"invalid email address: {exc}") from None
    return normalize_email(result.normalized)


def _ip(ip: str | None) -> str | None:
    if not ip:
        return None
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        return None


def _ua(user_agent: str | None) -> str | None:
    return user_agent[:512] if user_agent else None


async def _audit(
    session: AsyncSession,
    event: AuditEvent,
    *,
    user_id: uuid.UUID | None,
    ip: str | None = None,
    user_agent: str | None = None,
    **details: Any,
) -> None:
    await repo.insert_audit(
        session,
        event_type=event.value,
        user_id=user_id,
        ip=_ip(ip),
        user_agent=_ua(user_agent),
        details={k: (str(v) if isinstance(v, uuid.UUID | datetime) else v) for k, v in details.items()},
    )


# --- registration ------------------------------------------------------------------------------


async def register_user(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    email: str,
    first_name: str,
    last_name: str,
    password: str | None = None,
    password_hash: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    policy: AuthPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
) -> RegisteredUser:
    """Create an account (role customer) and its first email verification token.

    Give exactly one of ``password`` (checked against the policy, then hashed) or ``password_hash``
    (an argon2id hash made by ``passwords.hash_password``, so a raw password need not travel further).
    """
    now = now or utcnow()
    address = validated_email(email)
    if (password is None) == (password_hash is None):
        raise PasswordInputInvalid("give exactly one of password or password_hash")
    if password_hash is not None and not passwords.is_argon2id_hash(password_hash):
        raise PasswordInputInvalid("password_hash must be an argon2id hash (passwords.hash_password)")
    if password is not None:
        passwords.check_policy(password)
    if await repo.email_taken(session, address):
        raise EmailAlreadyRegistered(f"{address} is already registered", email=address)
    if await repo.get_user(session, user_id) is not None:
        raise UserAlreadyExists(f"user {user_id} already exists", user_id=str(user_id))
    stored_hash = (
        password_hash if password_hash is not None else await passwords.hash_password(password or "")
    )
    try:
        async with session.begin_nested():
            await repo.insert_user(
                session,
                user_id=user_id,
                email=address,
                password_hash=stored_hash,
                first_name=first_name.strip(),
                last_name=last_name.strip(),
            )
    except IntegrityError as exc:  # lost a race with a concurrent registration
        if "uq_users_email_lower" in str(exc.orig):
            raise EmailAlreadyRegistered(f"{address} is already registered", email=address) from None
        if "users_pkey" in str(exc.orig):
            raise UserAlreadyExists(f"user {user_id} already exists", user_id=str(user_id)) from None
        raise
    await _audit(
        session, AuditEvent.USER_REGISTERED, user_id=user_id, ip=ip, user_agent=user_agent, email=address
    )
    await _grant(session, user_id, RoleName.CUSTOMER.value, granted_by=None, ip=ip, user_agent=user_agent)
    token = await _issue_verification(session, user_id, policy=policy, now=now)
    return RegisteredUser(user_id=user_id, email=address, verification_token=token)


async def delete_user(
    session: AsyncSession, user_id: uuid.UUID, *, reason: str = "registration compensated"
) -> bool:
    """Remove an account with its roles and tokens (the registration saga's compensation).
    False when there is no such account (already deleted)."""
    deleted = await repo.delete_user(session, user_id)
    if deleted:
        await _audit(session, AuditEvent.USER_DELETED, user_id=user_id, reason=reason)
    return deleted


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> UserView:
    user = await repo.get_user(session, user_id)
    if user is None:
        raise UserNotFound(f"user {user_id} not found", user_id=str(user_id))
    return _view(user, await repo.user_role_names(session, user_id))


def _view(user: User, roles: list[str]) -> UserView:
    assert user.created_at is not None
    return UserView(
        id=user.id,
        email=user.email,
        first_name=user.first_name,
        last_name=user.last_name,
        status=user.status,
        roles=roles,
        email_verified_at=user.email_verified_at,
        locked_until=user.locked_until,
        last_login_at=user.last_login_at,
        created_at=user.created_at,
    )


# --- roles -------------------------------------------------------------------------------------


async def _grant(
    session: AsyncSession,
    user_id: uuid.UUID,
    role: str,
    *,
    granted_by: uuid.UUID | None,
    ip: str | None,
    user_agent: str | None,
) -> bool:
    role_id = await repo.role_id(session, role)
    if role_id is None:
        raise UnknownRole(f"unknown role {role!r}; expected one of: {', '.join(RoleName)}", role=role)
    added = await repo.add_user_role(session, user_id, role_id, granted_by)
    if added:
        await _audit(
            session,
            AuditEvent.ROLE_GRANTED,
            user_id=user_id,
            ip=ip,
            user_agent=user_agent,
            role=role,
            granted_by=granted_by,
        )
    return added


async def grant_role(
    session: AsyncSession,
    user_id: uuid.UUID,
    role: str,
    *,
    granted_by: uuid.UUID | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> bool:
    """Give ``user_id`` the role; False when it already had it. Takes effect at the next access token."""
    if await repo.get_user(session, user_id) is None:
        raise UserNotFound(f"user {user_id} not found", user_id=str(user_id))
    return await _grant(session, user_id, role, granted_by=granted_by, ip=ip, user_agent=user_agent)


async def revoke_role(
    session: AsyncSession,
    user_id: uuid.UUID,
    role: str,
    *,
    revoked_by: uuid.UUID | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> bool:
    role_id = await repo.role_id(session, role)
    if role_id is None:
        raise UnknownRole(f"unknown role {role!r}; expected one of: {', '.join(RoleName)}", role=role)
    removed = await repo.remove_user_role(session, user_id, role_id)
    if removed:
        await _audit(
            session,
            AuditEvent.ROLE_REVOKED,
            user_id=user_id,
            ip=ip,
            user_agent=user_agent,
            role=role,
            revoked_by=revoked_by,
        )
    return removed


# --- login, refresh, logout --------------------------------------------------------------------


def _retry_after(until: datetime, now: datetime) -> int:
    return max(1, int((until - now).total_seconds() + 0.999))


async def _login_block(
    session: AsyncSession, user: User | None, email: str, ip: str | None, now: datetime, policy: AuthPolicy
) -> RateLimited | None:
    if user is not None and user.locked_until is not None and user.locked_until > now:
        return RateLimited(
            "account temporarily locked after too many failed logins",
            retry_after_seconds=_retry_after(user.locked_until, now),
            scope="account_lock",
        )
    limits = [(SCOPE_LOGIN_ACCOUNT, email, policy.max_failed_per_account)]
    if ip is not None:
        limits.append((SCOPE_LOGIN_IP, ip, policy.max_failed_per_ip))
    for scope, key, limit in limits:
        counter = await repo.read_counter(session, scope, key, window=policy.login_window, now=now)
        if counter is not None and counter.count >= limit:
            return RateLimited(
                "too many failed logins; try again later",
                retry_after_seconds=_retry_after(counter.window_start + policy.login_window, now),
                scope=scope,
            )
    return None


async def login(
    session: AsyncSession,
    issuer: TokenIssuer,
    *,
    email: str,
    password: str,
    ip: str | None = None,
    user_agent: str | None = None,
    policy: AuthPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
) -> Outcome[TokenPair]:
    """Check the credentials and open a session (access token + refresh token of a new family).

    Refusals (``InvalidCredentials``, ``RateLimited``) come back in the Outcome: commit, then unwrap.
    """
    now = now or utcnow()
    address, client_ip = normalize_email(email), _ip(ip)
    user = await repo.find_active_user_by_email(session, address)
    blocked = await _login_block(session, user, address, client_ip, now, policy)
    if blocked is not None:
        await _audit(
            session,
            AuditEvent.LOGIN_BLOCKED,
            user_id=user.id if user else None,
            ip=ip,
            user_agent=user_agent,
            email=address,
            **blocked.context,
        )
        return Outcome(error=blocked)

    if user is None:
        await passwords.burn_verification(password)  # same cost as a wrong password: no enumeration
        ok = False
    else:
        ok = await passwords.verify_password(user.password_hash, password)
    if not ok:
        await _record_failed_login(session, user, address, client_ip, ip, user_agent, now, policy)
        return Outcome(error=InvalidCredentials("wrong email or password"))

    assert user is not None
    values: dict[str, Any] = {"failed_login_count": 0, "locked_until": None, "last_login_at": now}
    rehashed = passwords.needs_rehash(user.password_hash)
    if rehashed:
        values["password_hash"] = await passwords.hash_password(password, check=False)
    await repo.update_user(session, user.id, **values)
    await repo.clear_counter(session, SCOPE_LOGIN_ACCOUNT, address)
    family_id = uuid.uuid4()
    pair = await _open_tokens(session, issuer, user.id, family_id, client_ip, user_agent, now, policy)
    await _audit(
        session,
        AuditEvent.LOGIN_SUCCEEDED,
        user_id=user.id,
        ip=ip,
        user_agent=user_agent,
        family_id=family_id,
    )
    if rehashed:
        await _audit(session, AuditEvent.PASSWORD_REHASHED, user_id=user.id, ip=ip, user_agent=user_agent)
    return Outcome(value=pair)


async def _record_failed_login(
    session: AsyncSession,
    user: User | None,
    address: str,
    client_ip: str | None,
    ip: str | None,
    user_agent: str | None,
    now: datetime,
    policy: AuthPolicy,
) -> None:
    counter = await repo.hit_counter(
        session, SCOPE_LOGIN_ACCOUNT, address, window=policy.login_window, now=now
    )
    if client_ip is not None:
        await repo.hit_counter(session, SCOPE_LOGIN_IP, client_ip, window=policy.login_window, now=now)
    locked_until: datetime | None = None
    failures = counter.count
    if user is not None:
        current = await repo.get_user(session, user.id, for_update=True)
        if current is not None:
            lock_expired = current.locked_until is not None and current.locked_until <= now
            failures = 1 if lock_expired else current.failed_login_count + 1
            if failures >= policy.max_failed_per_account:
                locked_until = now + policy.lockout
            await repo.update_user(
                session,
                user.id,
                failed_login_count=failures,
                locked_until=locked_until
                if locked_until
                else (None if lock_expired else current.locked_until),
            )
    await _audit(
        session,
        AuditEvent.LOGIN_FAILED,
        user_id=user.id if user else None,
        ip=ip,
        user_agent=user_agent,
        email=address,
        reason="unknown_email" if user is None else "bad_password",
        failures=failures,
        failures_in_window=counter.count,
    )
    if user is not None and locked_until is not None:
        await _audit(
            session,
            AuditEvent.ACCOUNT_LOCKED,
            user_id=user.id,
            ip=ip,
            user_agent=user_agent,
            failures=failures,
            locked_until=locked_until,
        )


async def _open_tokens(
    session: AsyncSession,
    issuer: TokenIssuer,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    client_ip: str | None,
    user_agent: str | None,
    now: datetime,
    policy: AuthPolicy,
    *,
    token_id: uuid.UUID | None = None,
) -> TokenPair:
    raw = new_opaque_token()
    expires_at = now + policy.refresh_ttl
    await repo.insert_refresh_token(
        session,
        token_id=token_id or uuid.uuid4(),
        user_id=user_id,
        family_id=family_id,
        token_hash=hash_token(raw),
        expires_at=expires_at,
        ip=client_ip,
        user_agent=_ua(user_agent),
    )
    access = issuer.issue(user_id, await repo.user_role_names(session, user_id), now=now)
    return TokenPair(
        access_token=access.token,
        refresh_token=raw,
        expires_in=access.expires_in,
        refresh_token_expires_at=expires_at,
    )


async def refresh(
    session: AsyncSession,
    issuer: TokenIssuer,
    *,
    refresh_token: str,
    ip: str | None = None,
    user_agent: str | None = None,
    policy: AuthPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
) -> Outcome[TokenPair]:
    """Exchange a refresh token for a new pair (rotation: the old token becomes ``rotated``).

    Presenting an already rotated token is reuse (a copy of it was stolen, or replayed): the whole
    family is revoked, the event audited, and ``RefreshTokenReused`` returned. Commit, then unwrap.
    """
    now = now or utcnow()
    token = await repo.refresh_token_by_hash(session, hash_token(refresh_token))
    if token is None:
        return Outcome(error=InvalidRefreshToken("unknown refresh token"))
    if token.status == RefreshTokenStatus.ROTATED:
        revoked = await repo.revoke_family(session, token.family_id, RevokeReason.REUSE_DETECTED.value, now)
        await _audit(
            session,
            AuditEvent.REFRESH_TOKEN_REUSED,
            user_id=token.user_id,
            ip=ip,
            user_agent=user_agent,
            family_id=token.family_id,
            token_id=token.id,
            revoked=revoked,
        )
        return Outcome(
            error=RefreshTokenReused(
                "refresh token was already used; every token of this session has been revoked",
                family_id=str(token.family_id),
            )
        )
    if token.status != RefreshTokenStatus.ACTIVE:
        return Outcome(error=InvalidRefreshToken("refresh token revoked"))
    if token.expires_at <= now:
        return Outcome(error=InvalidRefreshToken("refresh token expired"))
    user = await repo.get_user(session, token.user_id)
    if user is None or not user.is_active:
        await repo.revoke_family(session, token.family_id, RevokeReason.USER_INACTIVE.value, now)
        return Outcome(error=InvalidRefreshToken("account is not active"))
    successor = uuid.uuid4()
    pair = await _open_tokens(
        session, issuer, token.user_id, token.family_id, _ip(ip), user_agent, now, policy, token_id=successor
    )
    await repo.mark_rotated(session, token.id, successor, now)
    return Outcome(value=pair)


async def logout(
    session: AsyncSession,
    *,
    refresh_token: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> bool:
    """End the session of ``refresh_token`` (revokes its whole family). False when nothing was active."""
    now = now or utcnow()
    token = await repo.refresh_token_by_hash(session, hash_token(refresh_token))
    if token is None:
        return False
    revoked = await repo.revoke_family(session, token.family_id, RevokeReason.LOGOUT.value, now)
    if revoked:
        await _audit(
            session,
            AuditEvent.LOGOUT,
            user_id=token.user_id,
            ip=ip,
            user_agent=user_agent,
            family_id=token.family_id,
        )
    return revoked > 0


# --- email verification ------------------------------------------------------------------------


async def _issue_verification(
    session: AsyncSession, user_id: uuid.UUID, *, policy: AuthPolicy, now: datetime
) -> str:
    raw = new_opaque_token()
    await repo.supersede_pending(session, EmailVerificationToken, user_id)
    await repo.insert_one_time_token(
        session,
        EmailVerificationToken,
        user_id=user_id,
        token_hash=hash_token(raw),
        expires_at=now + policy.verification_ttl,
    )
    await _audit(
        session,
        AuditEvent.EMAIL_VERIFICATION_ISSUED,
        user_id=user_id,
        expires_at=now + policy.verification_ttl,
    )
    return raw


async def issue_email_verification(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    policy: AuthPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
) -> str:
    """A new verification token (the raw value, to be emailed); earlier pending ones stop working."""
    user = await repo.get_user(session, user_id, for_update=True)
    if user is None:
        raise UserNotFound(f"user {user_id} not found", user_id=str(user_id))
    if user.email_verified_at is not None:
        raise EmailAlreadyVerified(f"the email of user {user_id} is already verified", user_id=str(user_id))
    return await _issue_verification(session, user_id, policy=policy, now=now or utcnow())


async def verify_email(
    session: AsyncSession,
    token: str,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> uuid.UUID:
    """Consume a verification token and mark the email verified; the user id."""
    now = now or utcnow()
    row = await repo.one_time_token_by_hash(session, EmailVerificationToken, hash_token(token))
    if row is None or row.status != OneTimeTokenStatus.PENDING or row.expires_at <= now:
        raise InvalidVerificationToken("verification token is invalid, expired or already used")
    await repo.mark_one_time_token_used(session, EmailVerificationToken, row.id, now)
    user = await repo.get_user(session, row.user_id, for_update=True)
    assert user is not None  # tokens cascade with their user
    if user.email_verified_at is None:
        await repo.update_user(session, user.id, email_verified_at=now)
    await _audit(session, AuditEvent.EMAIL_VERIFIED, user_id=user.id, ip=ip, user_agent=user_agent)
    return user.id


# --- password reset ----------------------------------------------------------------------------


async def request_password_reset(
    session: AsyncSession,
    email: str,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    policy: AuthPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
) -> PasswordResetIssued:
    """A reset token for the active account with this email, or nulls when there is none (the caller
    answers the same either way, so the response does not reveal which emails have accounts)."""
    now = now or utcnow()
    address = normalize_email(email)
    user = await repo.find_active_user_by_email(session, address)
    if user is None:
        await _audit(
            session,
            AuditEvent.PASSWORD_RESET_REQUESTED,
            user_id=None,
            ip=ip,
            user_agent=user_agent,
            email=address[:320],
            account_found=False,
        )
        return PasswordResetIssued()
    token = await _issue_reset(session, user.id, ip=ip, user_agent=user_agent, policy=policy, now=now)
    return PasswordResetIssued(user_id=user.id, token=token, first_name=user.first_name)


async def reissue_password_reset(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    policy: AuthPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
) -> PasswordResetIssued:
    """A fresh reset token for a user found by an earlier request (a replayed request: the raw token
    of the first one was never stored). Nulls when the account is gone or no longer active."""
    user = await repo.get_user(session, user_id)
    if user is None or not user.is_active:
        return PasswordResetIssued()
    token = await _issue_reset(
        session, user.id, ip=ip, user_agent=user_agent, policy=policy, now=now or utcnow()
    )
    return PasswordResetIssued(user_id=user.id, token=token, first_name=user.first_name)


async def _issue_reset(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    ip: str | None,
    user_agent: str | None,
    policy: AuthPolicy,
    now: datetime,
) -> str:
    raw = new_opaque_token()
    await repo.supersede_pending(session, PasswordResetToken, user_id)
    await repo.insert_one_time_token(
        session,
        PasswordResetToken,
        user_id=user_id,
        token_hash=hash_token(raw),
        expires_at=now + policy.reset_ttl,
        ip=_ip(ip),
    )
    await _audit(
        session,
        AuditEvent.PASSWORD_RESET_REQUESTED,
        user_id=user_id,
        ip=ip,
        user_agent=user_agent,
        account_found=True,
        expires_at=now + policy.reset_ttl,
    )
    return raw


async def confirm_password_reset(
    session: AsyncSession,
    token: str,
    new_password: str,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> uuid.UUID:
    """Set a new password with a reset token (single use). Every session of the user is revoked and
    any login lock lifted. The user id."""
    now = now or utcnow()
    passwords.check_policy(new_password)
    row = await repo.one_time_token_by_hash(session, PasswordResetToken, hash_token(token))
    if row is None or row.status != OneTimeTokenStatus.PENDING or row.expires_at <= now:
        raise InvalidResetToken("password reset token is invalid, expired or already used")
    user = await repo.get_user(session, row.user_id, for_update=True)
    if user is None or not user.is_active:
        raise InvalidResetToken("password reset token is invalid, expired or already used")
    new_hash = await passwords.hash_password(new_password)
    await repo.mark_one_time_token_used(session, PasswordResetToken, row.id, now)
    await repo.supersede_pending(session, PasswordResetToken, user.id)
    await repo.update_user(
        session,
        user.id,
        password_hash=new_hash,
        password_changed_at=now,
        failed_login_count=0,
        locked_until=None,
    )
    revoked = await repo.revoke_user_refresh_tokens(session, user.id, RevokeReason.PASSWORD_RESET.value, now)
    await repo.clear_counter(session, SCOPE_LOGIN_ACCOUNT, user.email)
    await _audit(
        session,
        AuditEvent.PASSWORD_RESET_COMPLETED,
        user_id=user.id,
        ip=ip,
        user_agent=user_agent,
        sessions_revoked=revoked,
    )
    return user.id


# --- partition maintenance ---------------------------------------------------------------------


async def ensure_audit_partitions(
    session: AsyncSession, *, months_ahead: int = 3, today: date | None = None
) -> list[str]:
    """Create the monthly partitions of security_audit_logs from this month to ``months_ahead``
    months ahead (UTC month boundaries); the names of those that did not exist yet."""
    first = month_start(today or utcnow().date())
    months = [add_months(first, k) for k in range(months_ahead + 1)]
    names = [monthly_partition_name(AUDIT_PARENT, m) for m in months]
    existing = await repo.existing_tables(session, names)
    await repo.use_utc(session)
    await repo.execute_ddl(session, [monthly_partition_ddl(AUDIT_PARENT, m) for m in months])
    return [name for name in names if name not in existing]


async def drop_expired_audit_partitions(
    session: AsyncSession, *, keep_months: int, today: date | None = None
) -> list[str]:
    """Drop the monthly partitions of security_audit_logs older than the ``keep_months`` whole months
    before this one (0: none); the names dropped. Waits at most 10 s for the table lock (writers hold
    it briefly): the daily run tries again tomorrow rather than stall sign-ins."""
    expired = expired_monthly_partitions(
        await partition_names(session, AUDIT_PARENT), AUDIT_PARENT, today or utcnow().date(), keep_months
    )
    await drop_partitions(session, AUDIT_PARENT, expired)
    return expired
