"""Auth service on the real auth_db: argon2id hashing and rehash, login failures audited and
throttled (per account and per IP, lockout), refresh rotation with reuse detection, one-time tokens
(hash only, single use, expiry), roles, the partitioned security audit log, activity idempotency."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from cryptography.fernet import Fernet
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from activities.auth import (
    AuthActivities,
    CreateUserInput,
    CreateUserResult,
    DeleteUserInput,
    EnsurePartitionsInput,
    IssueEmailVerificationInput,
    RequestPasswordResetInput,
)
from core.crypto import TokenCipher
from core.db import SessionFactory
from core.partitions import (
    add_months,
    drop_partitions,
    month_start,
    monthly_partition_ddl,
    monthly_partition_name,
)
from core.settings import Settings
from services.auth import passwords, repository, service
from services.auth.errors import (
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidResetToken,
    InvalidVerificationToken,
    RateLimited,
    RefreshTokenReused,
    UnknownRole,
    WeakPassword,
)
from services.auth.schemas import TokenPair
from services.auth.tokens import InvalidAccessToken, TokenIssuer

PASSWORD = "correct-horse-42"
AUDIT_TABLES_WITH_DATA = (
    "users",
    "user_roles",
    "refresh_tokens",
    "password_reset_tokens",
    "email_verification_tokens",
    "security_audit_logs",
    "rate_limits",
    "idempotency_keys",
)


@pytest.fixture
def acts(sessions: dict[str, SessionFactory]) -> AuthActivities:
    return AuthActivities(sessions["auth"])


@pytest.fixture
def db(sessions: dict[str, SessionFactory]) -> SessionFactory:
    return sessions["auth"]


@pytest.fixture
def issuer(databases: Settings) -> TokenIssuer:
    return TokenIssuer.from_settings(databases)


def key() -> str:
    return f"register-{uuid.uuid4()}:step"


def email() -> str:
    return f"u-{uuid.uuid4().hex[:12]}@example.com"


def ip() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


async def register(acts: AuthActivities, address: str | None = None, **over: Any) -> CreateUserResult:
    values: dict[str, Any] = {
        "idempotency_key": key(),
        "user_id": uuid.uuid4(),
        "email": address or email(),
        "password": PASSWORD,
        "first_name": "Ada",
        "last_name": "Lovelace",
        **over,
    }
    return await acts.create_user(CreateUserInput(**values))


async def fetch(db: SessionFactory, sql: str, **params: Any) -> list[Any]:
    async with db() as s:
        return list((await s.execute(text(sql), params)).all())


async def scalar(db: SessionFactory, sql: str, **params: Any) -> Any:
    async with db() as s:
        return (await s.execute(text(sql), params)).scalar()


async def login(
    db: SessionFactory, issuer: TokenIssuer, address: str, password: str = PASSWORD, **kw: Any
) -> service.Outcome[TokenPair]:
    async with db() as s, s.begin():
        return await service.login(s, issuer, email=address, password=password, **kw)


async def refresh(db: SessionFactory, issuer: TokenIssuer, token: str) -> service.Outcome[TokenPair]:
    async with db() as s, s.begin():
        return await service.refresh(s, issuer, refresh_token=token, ip="192.0.2.1")


async def audit_events(db: SessionFactory, user_id: uuid.UUID) -> list[str]:
    rows = await fetch(
        db,
        "SELECT event_type FROM security_audit_logs WHERE user_id = :u ORDER BY created_at, event_type",
        u=user_id,
    )
    return [r.event_type for r in rows]


# --- registration and passwords ------------------------------------------------------------------


async def test_register_hashes_with_argon2id_and_login_issues_valid_tokens(
    acts: AuthActivities, db: SessionFactory, issuer: TokenIssuer
) -> None:
    address = email()
    created = await register(acts, address.upper().replace("EXAMPLE", "Example"))
    assert created.email == address  # stored normalized

    row = (await fetch(db, "SELECT * FROM users WHERE id = :u", u=created.user_id))[0]
    assert row.email == address and row.is_active and row.status == "active"
    assert row.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    assert PASSWORD not in row.password_hash
    assert PasswordHasher().verify(row.password_hash, PASSWORD)
    roles = await fetch(
        db,
        "SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = :u",
        u=row.id,
    )
    assert [r.name for r in roles] == ["customer"]
    assert sorted(await audit_events(db, row.id)) == [
        "email_verification_issued",
        "role_granted",
        "user_registered",
    ]

    outcome = await login(db, issuer, address.upper(), ip="198.51.100.7", user_agent="pytest")
    pair = outcome.unwrap()
    claims = issuer.verify(pair.access_token)
    assert claims.sub == created.user_id and claims.roles == ["customer"]
    assert (claims.exp - claims.iat) == timedelta(minutes=15) and pair.expires_in == 900
    assert pair.token_type == "bearer"
    after = (await fetch(db, "SELECT last_login_at, failed_login_count FROM users WHERE id = :u", u=row.id))[
        0
    ]
    assert after.last_login_at is not None and after.failed_login_count == 0
    ok = await fetch(
        db,
        "SELECT host(ip) AS ip, user_agent FROM security_audit_logs WHERE user_id = :u AND event_type = 'login_succeeded'",
        u=row.id,
    )
    assert [(r.ip, r.user_agent) for r in ok] == [("198.51.100.7", "pytest")]


async def test_create_user_is_idempotent_and_refuses_duplicates(
    acts: AuthActivities, db: SessionFactory
) -> None:
    inp = CreateUserInput(
        idempotency_key=key(),
        user_id=uuid.uuid4(),
        email=email(),
        password=PASSWORD,
        first_name="Grace",
        last_name="Hopper",
    )
    first = await acts.create_user(inp)
    again = await acts.create_user(inp)  # the step ran twice (worker died after commit)
    assert (again.user_id, again.email) == (first.user_id, first.email)
    assert await scalar(db, "SELECT count(*) FROM users WHERE email = :e", e=inp.email) == 1
    tokens = await fetch(
        db, "SELECT token_hash, status FROM email_verification_tokens WHERE user_id = :u", u=first.user_id
    )
    # Raw tokens are never stored, so the replay re-issued one and superseded the unreported first.
    assert sorted(t.status for t in tokens) == ["pending", "superseded"]
    pending = next(t for t in tokens if t.status == "pending")
    assert pending.token_hash == hashlib.sha256(raw(again.verification_token).encode()).hexdigest()
    ledger = await scalar(
        db, "SELECT result::text FROM idempotency_keys WHERE key = :k", k=inp.idempotency_key
    )
    assert first.verification_token not in ledger and again.verification_token not in ledger

    with pytest.raises(ApplicationError) as reused:
        await acts.create_user(inp.model_copy(update={"first_name": "Someone"}))
    assert reused.value.type == "IdempotencyKeyReused"

    other_key = key()
    with pytest.raises(ApplicationError) as dup:
        await register(acts, inp.email.upper(), idempotency_key=other_key)
    assert dup.value.type == "EmailAlreadyRegistered" and dup.value.non_retryable
    assert await scalar(db, "SELECT count(*) FROM users WHERE lower(email) = :e", e=inp.email) == 1
    assert await scalar(db, "SELECT count(*) FROM idempotency_keys WHERE key = :k", k=other_key) == 0


async def test_concurrent_registrations_of_one_email_create_one_user(
    acts: AuthActivities, db: SessionFactory
) -> None:
    address = email()
    results = await asyncio.gather(*(register(acts, address) for _ in range(4)), return_exceptions=True)
    ok = [r for r in results if isinstance(r, CreateUserResult)]
    refused = [r for r in results if isinstance(r, ApplicationError)]
    assert len(ok) == 1 and len(refused) == 3
    assert {r.type for r in refused} == {"EmailAlreadyRegistered"}
    assert await scalar(db, "SELECT count(*) FROM users WHERE email = :e", e=address) == 1


@pytest.mark.parametrize(
    ("password", "message"),
    [("Short1!", "at least 10"), ("alllowercaseletters", "two kinds"), ("1234567890123", "two kinds")],
)
async def test_weak_passwords_are_refused_and_nothing_is_written(
    acts: AuthActivities, db: SessionFactory, password: str, message: str
) -> None:
    address, k = email(), key()
    with pytest.raises(ApplicationError) as err:
        await register(acts, address, password=password, idempotency_key=k)
    assert err.value.type == "WeakPassword" and message in str(err.value)
    assert await scalar(db, "SELECT count(*) FROM users WHERE email = :e", e=address) == 0
    assert await scalar(db, "SELECT count(*) FROM idempotency_keys WHERE key = :k", k=k) == 0
    with pytest.raises(WeakPassword):
        passwords.check_policy(password)


def test_invalid_activity_input_is_refused_by_the_model() -> None:
    base: dict[str, Any] = {
        "idempotency_key": "k",
        "user_id": uuid.uuid4(),
        "first_name": "A",
        "last_name": "B",
    }
    with pytest.raises(ValidationError, match="value is not a valid email"):
        CreateUserInput(**base, email="not-an-email", password=PASSWORD)
    with pytest.raises(ValidationError, match="exactly one of password or password_hash"):
        CreateUserInput(**base, email=email())
    with pytest.raises(ValidationError, match="exactly one of password or password_hash"):
        CreateUserInput(**base, email=email(), password=PASSWORD, password_hash="$argon2id$x")
    with pytest.raises(ValidationError):
        EnsurePartitionsInput(months_ahead=-1)


async def test_register_with_a_precomputed_hash(
    acts: AuthActivities, db: SessionFactory, issuer: TokenIssuer
) -> None:
    hashed = await passwords.hash_password(PASSWORD)
    created = await register(acts, password=None, password_hash=hashed)
    assert await scalar(db, "SELECT password_hash FROM users WHERE id = :u", u=created.user_id) == hashed
    assert (await login(db, issuer, created.email)).ok
    with pytest.raises(ApplicationError) as err:
        await register(acts, password=None, password_hash="$2b$12$bcrypt-is-not-accepted-here")
    assert err.value.type == "PasswordInputInvalid"


async def test_login_rehashes_a_password_hashed_with_old_parameters(
    acts: AuthActivities, db: SessionFactory, issuer: TokenIssuer
) -> None:
    created = await register(acts)
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1, type=Type.ID).hash(PASSWORD)
    async with db() as s, s.begin():
        await s.execute(
            text("UPDATE users SET password_hash = :h WHERE id = :u"), {"h": weak, "u": created.user_id}
        )
    assert (await login(db, issuer, created.email)).ok
    new_hash = await scalar(db, "SELECT password_hash FROM users WHERE id = :u", u=created.user_id)
    assert new_hash != weak and new_hash.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    assert not passwords.needs_rehash(new_hash)
    assert "password_rehashed" in await audit_events(db, created.user_id)
    assert (await login(db, issuer, created.email)).ok


# --- failed logins, throttling, lockout ------------------------------------------------------------


async def test_wrong_password_is_refused_and_audited(
    acts: AuthActivities, db: SessionFactory, issuer: TokenIssuer
) -> None:
    created, client = await register(acts), ip()
    outcome = await login(db, issuer, created.email, "wrong-password-1", ip=client, user_agent="curl/8")
    assert isinstance(outcome.error, InvalidCredentials)
    with pytest.raises(InvalidCredentials):
        outcome.unwrap()
    # The refusal's writes were committed with the transaction.
    assert await scalar(db, "SELECT failed_login_count FROM users WHERE id = :u", u=created.user_id) == 1
    failed = await fetch(
        db,
        "SELECT host(ip) AS ip, user_agent, details FROM security_audit_logs"
        " WHERE user_id = :u AND event_type = 'login_failed'",
        u=created.user_id,
    )
    assert len(failed) == 1 and failed[0].ip == client and failed[0].user_agent == "curl/8"
    assert failed[0].details["reason"] == "bad_password"
    counters = await fetch(
        db, "SELECT scope, key, count FROM rate_limits WHERE key IN (:e, :i)", e=created.email, i=client
    )
    assert sorted((c.scope, c.count) for c in counters) == [
        ("login_failed_account", 1),
        ("login_failed_ip", 1),
    ]

    unknown = email()
    outcome = await login(db, issuer, unknown, PASSWORD, ip=client)
    assert isinstance(outcome.error, InvalidCredentials)
    rows = await fetch(
        db,
        "SELECT user_id, details FROM security_audit_logs WHERE event_type = 'login_failed' AND details->>'email' = :e",
        e=unknown,
    )
    assert len(rows) == 1 and rows[0].user_id is None and rows[0].details["reason"] == "unknown_email"


async def test_account_locks_after_five_failures_and_unlocks_after_the_lockout(
    acts: AuthActivities, db: SessionFactory, issuer: TokenIssuer
) -> None:
    created = await register(acts)
    for attempt in range(5):
        outcome = await login(db, issuer, created.email, f"wrong-password-{attempt}", ip=ip())
        assert isinstance(outcome.error, InvalidCredentials)
    user = (
        await fetch(db, "SELECT failed_login_count, locked_until FROM users WHERE id = :u", u=created.user_id)
    )[0]
    assert user.failed_login_count == 5 and user.locked_until is not None
    assert (
        await scalar(
            db,
            "SELECT count FROM rate_limits WHERE scope = 'login_failed_account' AND key = :e",
            e=created.email,
        )
        == 5
    )
    assert (await audit_events(db, created.user_id)).count("account_locked") == 1

    # Even the right password is refused while locked, with a retry delay, and audited.
    blocked = await login(db, issuer, created.email, PASSWORD, ip=ip())
    assert isinstance(blocked.error, RateLimited)
    assert 0 < blocked.error.retry_after_seconds <= 15 * 60
    assert (
        blocked.error.to_application_error().details[0]["retry_after_seconds"]
        == blocked.error.retry_after_seconds
    )
    assert "login_blocked" in await audit_events(db, created.user_id)

    later = datetime.now(UTC) + timedelta(minutes=16)
    assert (await login(db, issuer, created.email, PASSWORD, now=later)).ok
    user = (
        await fetch(db, "SELECT failed_login_count, locked_until FROM users WHERE id = :u", u=created.user_id)
    )[0]
    assert user.failed_login_count == 0 and user.locked_until is None
    assert await scalar(db, "SELECT count(*) FROM rate_limits WHERE key = :e", e=created.email) == 0


async def test_failures_from_one_ip_across_accounts_are_throttled(
    acts: AuthActivities, db: SessionFactory, issuer: TokenIssuer
) -> None:
    created, client = await register(acts), ip()
    policy = service.AuthPolicy(max_failed_per_ip=3)
    for _ in range(3):
        assert not (await login(db, issuer, email(), "guessing-123", ip=client, policy=policy)).ok
    assert (
        await scalar(
            db, "SELECT count FROM rate_limits WHERE scope = 'login_failed_ip' AND key = :i", i=client
        )
        == 3
    )
    blocked = await login(db, issuer, created.email, PASSWORD, ip=client, policy=policy)
    assert isinstance(blocked.error, RateLimited) and blocked.error.context["scope"] == "login_failed_ip"
    assert (await login(db, issuer, created.email, PASSWORD, ip=ip(), policy=policy)).ok


# --- refresh tokens --------------------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(
    acts: AuthActivities, db: SessionFactory, issuer: TokenIssuer
) -> None:
    created = await register(acts)
    first = (await login(db, issuer, created.email)).unwrap()
    other_session = (await login(db, issuer, created.email)).unwrap()

    second = (await refresh(db, issuer, first.refresh_token)).unwrap()
    third = (await refresh(db, issuer, second.refresh_token)).unwrap()
    assert len({first.refresh_token, second.refresh_token, third.refresh_token}) == 3
    assert issuer.verify(third.access_token).sub == created.user_id

    h = lambda raw: hashlib.sha256(raw.encode()).hexdigest()  # noqa: E731
    rows = {
        r.token_hash: r
        for r in await fetch(db, "SELECT * FROM refresh_tokens WHERE user_id = :u", u=created.user_id)
    }
    t1, t2, t3 = rows[h(first.refresh_token)], rows[h(second.refresh_token)], rows[h(third.refresh_token)]
    assert t1.family_id == t2.family_id == t3.family_id != rows[h(other_session.refresh_token)].family_id
    assert (t1.status, t1.replaced_by_id) == ("rotated", t2.id)
    assert (t2.status, t2.replaced_by_id) == ("rotated", t3.id)
    assert t3.status == "active"

    reuse = await refresh(db, issuer, first.refresh_token)  # a stolen copy of an old token
    assert isinstance(reuse.error, RefreshTokenReused)
    statuses = await fetch(
        db, "SELECT status, revoked_reason FROM refresh_tokens WHERE family_id = :f", f=t1.family_id
    )
    assert sorted((s.status, s.revoked_reason) for s in statuses) == [
        ("revoked", "reuse_detected"),
        ("rotated", None),
        ("rotated", None),
    ]
    logged = await fetch(
        db,
        "SELECT details FROM security_audit_logs WHERE user_id = :u AND event_type = 'refresh_token_reused'",
        u=created.user_id,
    )
    assert len(logged) == 1 and logged[0].details["family_id"] == str(t1.family_id)
    assert isinstance((await refresh(db, issuer, third.refresh_token)).error, InvalidRefreshToken)
    # The other login session is untouched.
    assert (await refresh(db, issuer, other_session.refresh_token)).ok
    assert isinstance((await refresh(db, issuer, "not-a-token")).error, InvalidRefreshToken)


async def test_logout_revokes_the_session_and_expired_tokens_are_refused(
    acts: AuthActivities, db: SessionFactory, issuer: TokenIssuer
) -> None:
    created = await register(acts)
    pair = (await login(db, issuer, created.email)).unwrap()
    async with db() as s, s.begin():
        assert await service.logout(s, refresh_token=pair.refresh_token)
    assert isinstance((await refresh(db, issuer, pair.refresh_token)).error, InvalidRefreshToken)
    assert "logout" in await audit_events(db, created.user_id)

    pair = (await login(db, issuer, created.email)).unwrap()
    async with db() as s, s.begin():
        outcome = await service.refresh(
            s, issuer, refresh_token=pair.refresh_token, now=datetime.now(UTC) + timedelta(days=31)
        )
    assert isinstance(outcome.error, InvalidRefreshToken) and "expired" in str(outcome.error)


def test_access_tokens_reject_tampering_expiry_and_other_secrets(issuer: TokenIssuer) -> None:
    user_id = uuid.uuid4()
    token = issuer.issue(user_id, ["customer"]).token
    assert issuer.verify(token).sub == user_id
    with pytest.raises(InvalidAccessToken):
        TokenIssuer("another-secret-of-at-least-32-bytes!!").verify(token)
    head, body, sig = token.split(".")
    with pytest.raises(InvalidAccessToken):
        issuer.verify(f"{head}.{body}.{sig[::-1]}")
    old = issuer.issue(user_id, ["admin"], now=datetime.now(UTC) - timedelta(hours=1)).token
    with pytest.raises(InvalidAccessToken, match="expired"):
        issuer.verify(old)
    with pytest.raises(ValueError, match="32 bytes"):
        TokenIssuer("short")


# --- one-time tokens -------------------------------------------------------------------------------


def raw(token: str | None) -> str:
    """A raw token from a result of an input without ``link_prefix``."""
    assert token is not None
    return token


async def test_with_a_link_prefix_the_link_comes_back_encrypted(
    sessions: dict[str, SessionFactory], db: SessionFactory
) -> None:
    """The saga's history then holds nothing usable: the link decrypts with ENCRYPTION_KEY only."""
    cipher = TokenCipher(Fernet.generate_key())
    acts = AuthActivities(sessions["auth"], cipher=cipher)
    prefix = "https://shop.test/verify-email?token="
    inp = CreateUserInput(
        idempotency_key=key(),
        user_id=uuid.uuid4(),
        email=f"link-{uuid.uuid4().hex[:8]}@example.com",
        password=PASSWORD,
        first_name="Ada",
        last_name="Lovelace",
        link_prefix=prefix,
    )
    created = await acts.create_user(inp)
    assert created.verification_token is None and created.verification_link_encrypted
    link = cipher.decrypt(created.verification_link_encrypted)
    assert link.startswith(prefix) and link[len(prefix) :] not in created.verification_link_encrypted
    async with db() as s, s.begin():
        assert await service.verify_email(s, link[len(prefix) :]) == created.user_id
    other = inp.model_copy(
        update={
            "idempotency_key": key(),
            "user_id": uuid.uuid4(),
            "email": f"x-{uuid.uuid4().hex[:8]}@example.com",
        }
    )
    with pytest.raises(RuntimeError, match="TokenCipher"):  # a worker without the key issues nothing
        await AuthActivities(sessions["auth"]).create_user(other)
    assert await scalar(db, "SELECT count(*) FROM users WHERE id = :u", u=other.user_id) == 0


async def test_email_verification_is_single_use(acts: AuthActivities, db: SessionFactory) -> None:
    created = await register(acts)
    async with db() as s, s.begin():
        assert (
            await service.verify_email(s, raw(created.verification_token), ip="192.0.2.5") == created.user_id
        )
    assert (
        await scalar(db, "SELECT email_verified_at FROM users WHERE id = :u", u=created.user_id) is not None
    )
    assert "email_verified" in await audit_events(db, created.user_id)
    with pytest.raises(InvalidVerificationToken):
        async with db() as s, s.begin():
            await service.verify_email(s, raw(created.verification_token))
    with pytest.raises(ApplicationError) as err:
        await acts.issue_email_verification(
            IssueEmailVerificationInput(idempotency_key=key(), user_id=created.user_id)
        )
    assert err.value.type == "EmailAlreadyVerified"


async def test_reissued_verification_supersedes_the_previous_token(
    acts: AuthActivities, db: SessionFactory
) -> None:
    created = await register(acts)
    issued = await acts.issue_email_verification(
        IssueEmailVerificationInput(idempotency_key=key(), user_id=created.user_id)
    )
    with pytest.raises(InvalidVerificationToken):
        async with db() as s, s.begin():
            await service.verify_email(s, raw(created.verification_token))
    async with db() as s, s.begin():
        await service.verify_email(s, issued.token)
    with pytest.raises(ApplicationError) as err:
        await acts.issue_email_verification(
            IssueEmailVerificationInput(idempotency_key=key(), user_id=uuid.uuid4())
        )
    assert err.value.type == "UserNotFound"


async def test_password_reset_token_is_single_use_and_expires(
    acts: AuthActivities, db: SessionFactory, issuer: TokenIssuer
) -> None:
    created = await register(acts)
    session_before = (await login(db, issuer, created.email)).unwrap()
    issued = await acts.request_password_reset(
        RequestPasswordResetInput(idempotency_key=key(), email=created.email.upper(), ip="203.0.113.9")
    )
    assert issued.user_id == created.user_id and issued.token

    # A weak new password is refused and the token stays usable.
    with pytest.raises(WeakPassword):
        async with db() as s, s.begin():
            await service.confirm_password_reset(s, issued.token, "short")
    new_password = "N3w-and-long-enough"
    async with db() as s, s.begin():
        assert await service.confirm_password_reset(s, issued.token, new_password) == created.user_id
    assert isinstance((await login(db, issuer, created.email, PASSWORD)).error, InvalidCredentials)
    assert (await login(db, issuer, created.email, new_password)).ok
    assert isinstance((await refresh(db, issuer, session_before.refresh_token)).error, InvalidRefreshToken)
    with pytest.raises(InvalidResetToken):  # single use
        async with db() as s, s.begin():
            await service.confirm_password_reset(s, issued.token, "An0ther-password")
    assert {"password_reset_requested", "password_reset_completed"} <= set(
        await audit_events(db, created.user_id)
    )

    # Expiry: an hour later the token is refused and left unused.
    expiring = await acts.request_password_reset(
        RequestPasswordResetInput(idempotency_key=key(), email=created.email)
    )
    assert expiring.token
    with pytest.raises(InvalidResetToken):
        async with db() as s, s.begin():
            await service.confirm_password_reset(
                s, expiring.token, "Valid-passw0rd", now=datetime.now(UTC) + timedelta(hours=1, seconds=1)
            )
    status = await scalar(
        db,
        "SELECT status FROM password_reset_tokens WHERE token_hash = :h",
        h=hashlib.sha256(expiring.token.encode()).hexdigest(),
    )
    assert status == "pending"


async def test_password_reset_for_unknown_email_reveals_nothing(
    acts: AuthActivities, db: SessionFactory
) -> None:
    unknown, k = email(), key()
    result = await acts.request_password_reset(RequestPasswordResetInput(idempotency_key=k, email=unknown))
    assert result.user_id is None and result.token is None
    again = await acts.request_password_reset(RequestPasswordResetInput(idempotency_key=k, email=unknown))
    assert again == result
    rows = await fetch(
        db,
        "SELECT user_id FROM security_audit_logs WHERE event_type = 'password_reset_requested'"
        " AND details->>'email' = :e",
        e=unknown,
    )
    assert [r.user_id for r in rows] == [None]


async def test_tokens_are_stored_only_as_sha256_hashes(
    acts: AuthActivities, db: SessionFactory, issuer: TokenIssuer
) -> None:
    created = await register(acts)
    pair = (await login(db, issuer, created.email)).unwrap()
    rotated = (await refresh(db, issuer, pair.refresh_token)).unwrap()
    reset = await acts.request_password_reset(
        RequestPasswordResetInput(idempotency_key=key(), email=created.email)
    )
    raw_tokens = [created.verification_token, pair.refresh_token, rotated.refresh_token, reset.token]
    assert all(raw_tokens)

    for table in AUDIT_TABLES_WITH_DATA:
        dump = await fetch(db, f"SELECT t::text AS row FROM {table} t")  # every column of every row
        for raw in raw_tokens:
            assert raw and not any(raw in r.row for r in dump), f"raw token found in {table}"
    digests = {
        "email_verification_tokens": created.verification_token,
        "refresh_tokens": rotated.refresh_token,
        "password_reset_tokens": reset.token,
    }
    for table, raw in digests.items():
        assert raw
        found = await scalar(
            db,
            f"SELECT count(*) FROM {table} WHERE token_hash = :h",
            h=hashlib.sha256(raw.encode()).hexdigest(),
        )
        assert found == 1, table


# --- roles and deletion ----------------------------------------------------------------------------


async def test_grant_role_is_audited_and_reaches_the_access_token(
    acts: AuthActivities, db: SessionFactory, issuer: TokenIssuer
) -> None:
    created, admin = await register(acts), await register(acts)
    async with db() as s, s.begin():
        assert await service.grant_role(s, created.user_id, "support", granted_by=admin.user_id)
        assert not await service.grant_role(s, created.user_id, "support")
    granted = await fetch(
        db,
        "SELECT details FROM security_audit_logs WHERE user_id = :u AND event_type = 'role_granted'"
        " AND details->>'role' = 'support'",
        u=created.user_id,
    )
    assert len(granted) == 1 and granted[0].details["granted_by"] == str(admin.user_id)
    claims = issuer.verify((await login(db, issuer, created.email)).unwrap().access_token)
    assert claims.roles == ["customer", "support"]
    async with db() as s:
        assert (await service.get_user(s, created.user_id)).roles == ["customer", "support"]
    with pytest.raises(UnknownRole):
        async with db() as s, s.begin():
            await service.grant_role(s, created.user_id, "superuser")


async def test_delete_user_compensation_removes_the_account(
    acts: AuthActivities, db: SessionFactory, issuer: TokenIssuer
) -> None:
    created = await register(acts)
    (await login(db, issuer, created.email)).unwrap()
    inp = DeleteUserInput(idempotency_key=key(), user_id=created.user_id)
    assert (await acts.delete_user(inp)).deleted
    assert (await acts.delete_user(inp)).deleted  # replay: the first result
    assert not (
        await acts.delete_user(DeleteUserInput(idempotency_key=key(), user_id=created.user_id))
    ).deleted
    for table, column in (("users", "id"), ("user_roles", "user_id"), ("refresh_tokens", "user_id"),
                          ("email_verification_tokens", "user_id")):  # fmt: skip
        assert await scalar(db, f"SELECT count(*) FROM {table} WHERE {column} = :u", u=created.user_id) == 0
    assert "user_deleted" in await audit_events(db, created.user_id)  # the trail outlives the account
    # The email is free again.
    assert (await register(acts, created.email)).email == created.email


# --- security audit log partitions ----------------------------------------------------------------


async def failed_login_at(s: AsyncSession, user_id: uuid.UUID, at: datetime) -> None:
    await repository.insert_audit(
        s, event_type="login_failed", user_id=user_id, ip=None, user_agent=None, details={}, created_at=at
    )


async def test_audit_rows_land_in_their_monthly_partition_and_future_ones_are_created(
    acts: AuthActivities, db: SessionFactory
) -> None:
    this_month = month_start(datetime.now(UTC).date())
    user_id = uuid.uuid4()
    async with db() as s, s.begin():
        for months in (0, 2):
            at = datetime.combine(add_months(this_month, months), datetime.min.time(), UTC) + timedelta(
                days=3
            )
            await failed_login_at(s, user_id, at)
    rows = await fetch(
        db,
        "SELECT tableoid::regclass::text AS part, created_at FROM security_audit_logs WHERE user_id = :u"
        " ORDER BY created_at",
        u=user_id,
    )
    assert [r.part for r in rows] == [
        monthly_partition_name("security_audit_logs", this_month),
        monthly_partition_name("security_audit_logs", add_months(this_month, 2)),
    ]

    wanted = [monthly_partition_name("security_audit_logs", add_months(this_month, k)) for k in range(7)]
    before = {
        r.relname for r in await fetch(db, "SELECT relname FROM pg_class WHERE relname = ANY(:n)", n=wanted)
    }
    created = await acts.ensure_partitions(EnsurePartitionsInput(months_ahead=6))
    assert created.created == [n for n in wanted if n not in before] and created.created
    after = {
        r.relname for r in await fetch(db, "SELECT relname FROM pg_class WHERE relname = ANY(:n)", n=wanted)
    }
    assert after == set(wanted)
    assert (await acts.ensure_partitions(EnsurePartitionsInput(months_ahead=6))).created == []

    # A row six months ahead now has a home; month boundaries are midnight UTC.
    edge = datetime.combine(add_months(this_month, 6), datetime.min.time(), UTC)
    async with db() as s, s.begin():
        await failed_login_at(s, user_id, edge)
    part = await scalar(
        db,
        "SELECT tableoid::regclass::text FROM security_audit_logs WHERE user_id = :u AND created_at = :t",
        u=user_id,
        t=edge,
    )
    assert part == monthly_partition_name("security_audit_logs", add_months(this_month, 6))


async def test_audit_months_past_the_retention_are_dropped(
    sessions: dict[str, SessionFactory], db: SessionFactory
) -> None:
    """AUDIT_LOG_RETENTION_MONTHS whole months before this one are kept; older monthly partitions are
    detached and dropped by the daily maintenance, rows and all. 0 keeps everything."""
    this_month = month_start(datetime.now(UTC).date())
    old = [date(2019, 3, 1), date(2019, 4, 1)]
    kept_edge = add_months(this_month, -13)  # the oldest month a 13-month retention keeps
    user_id = uuid.uuid4()
    async with db() as s, s.begin():
        await repository.use_utc(s)
        await repository.execute_ddl(
            s, [monthly_partition_ddl("security_audit_logs", m) for m in [*old, kept_edge]]
        )
        for month in [*old, kept_edge, this_month]:
            await failed_login_at(
                s, user_id, datetime.combine(month, datetime.min.time(), UTC) + timedelta(days=1)
            )
    names = [monthly_partition_name("security_audit_logs", m) for m in old]

    keep_all = AuthActivities(sessions["auth"], audit_log_retention_months=0)
    assert (await keep_all.ensure_partitions(EnsurePartitionsInput(months_ahead=1))).dropped == []

    keep_13 = AuthActivities(sessions["auth"], audit_log_retention_months=13)
    result = await keep_13.ensure_partitions(EnsurePartitionsInput(months_ahead=1))
    assert names == [n for n in result.dropped if n in names]  # oldest first
    assert monthly_partition_name("security_audit_logs", kept_edge) not in result.dropped
    gone = await fetch(db, "SELECT relname FROM pg_class WHERE relname = ANY(:n)", n=names)
    assert gone == []
    rows = await fetch(
        db, "SELECT created_at FROM security_audit_logs WHERE user_id = :u ORDER BY created_at", u=user_id
    )
    assert [r.created_at.date().replace(day=1) for r in rows] == [kept_edge, this_month]
    assert (await keep_13.ensure_partitions(EnsurePartitionsInput(months_ahead=1))).dropped == []
    # names go into DDL: anything but a partition of the table is refused, nothing is dropped
    with pytest.raises(ValueError, match="not partitions of security_audit_logs"):
        async with db() as s, s.begin():
            await drop_partitions(s, "security_audit_logs", ["users"])
    assert await scalar(db, "SELECT count(*) FROM pg_class WHERE relname = 'users'") == 1


async def test_concurrent_refreshes_of_one_token_rotate_once(
    acts: AuthActivities, db: SessionFactory, issuer: TokenIssuer
) -> None:
    created = await register(acts)
    pair = (await login(db, issuer, created.email)).unwrap()
    outcomes = await asyncio.gather(*(refresh(db, issuer, pair.refresh_token) for _ in range(3)))
    assert sum(o.ok for o in outcomes) == 1
    assert {type(o.error).__name__ for o in outcomes if not o.ok} == {"RefreshTokenReused"}
    # Reuse revoked the family, including the token the winner just received.
    active = await scalar(
        db, "SELECT count(*) FROM refresh_tokens WHERE user_id = :u AND status = 'active'", u=created.user_id
    )
    assert active == 0
