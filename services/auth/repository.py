"""All SQL of the auth service. Functions take the caller's AsyncSession and never commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import CursorResult, case, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.auth.models import (
    EmailVerificationToken,
    OneTimeTokenStatus,
    PasswordResetToken,
    RateLimit,
    RefreshToken,
    RefreshTokenStatus,
    Role,
    SecurityAuditLog,
    User,
    UserRole,
)

OneTimeToken = TypeVar("OneTimeToken", PasswordResetToken, EmailVerificationToken)


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


# --- users ------------------------------------------------------------------------------------


async def insert_user(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    email: str,
    password_hash: str,
    first_name: str,
    last_name: str,
) -> None:
    await session.execute(
        insert(User).values(
            id=user_id, email=email, password_hash=password_hash, first_name=first_name, last_name=last_name
        )
    )


async def email_taken(session: AsyncSession, email: str) -> bool:
    """Served by uq_users_email_lower."""
    found = await session.execute(select(col(User.id)).where(func.lower(col(User.email)) == email.lower()))
    return found.first() is not None


async def get_user(session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False) -> User | None:
    stmt = select(User).where(col(User.id) == user_id).execution_options(populate_existing=True)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_active_user_by_email(session: AsyncSession, email: str) -> User | None:
    """Served by idx_users_active (emails are stored normalized)."""
    stmt = (
        select(User)
        .where(col(User.email) == email, col(User.is_active).is_(True))
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def update_user(session: AsyncSession, user_id: uuid.UUID, **values: Any) -> None:
    await session.execute(update(User).where(col(User.id) == user_id).values(**values, updated_at=func.now()))


async def delete_user(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Deletes the account; its roles and tokens go with it (ON DELETE CASCADE)."""
    result = await session.execute(delete(User).where(col(User.id) == user_id))
    return _rowcount(result) > 0


# --- roles ------------------------------------------------------------------------------------


async def role_id(session: AsyncSession, name: str) -> uuid.UUID | None:
    return (await session.execute(select(col(Role.id)).where(col(Role.name) == name))).scalar_one_or_none()


async def user_role_names(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    rows = await session.execute(
        select(col(Role.name))
        .join(UserRole, col(UserRole.role_id) == col(Role.id))
        .where(col(UserRole.user_id) == user_id)
        .order_by(col(Role.name))
    )
    return list(rows.scalars())


async def add_user_role(
    session: AsyncSession, user_id: uuid.UUID, role: uuid.UUID, granted_by: uuid.UUID | None
) -> bool:
    """True when the grant is new (a repeated grant changes nothing)."""
    result = await session.execute(
        insert(UserRole)
        .values(user_id=user_id, role_id=role, granted_by=granted_by)
        .on_conflict_do_nothing(index_elements=["user_id", "role_id"])
        .returning(col(UserRole.user_id))
    )
    return result.first() is not None


async def remove_user_role(session: AsyncSession, user_id: uuid.UUID, role: uuid.UUID) -> bool:
    result = await session.execute(
        delete(UserRole).where(col(UserRole.user_id) == user_id, col(UserRole.role_id) == role)
    )
    return _rowcount(result) > 0


# --- refresh tokens -----------------------------------------------------------------------------


async def insert_refresh_token(
    session: AsyncSession,
    *,
    token_id: uuid.UUID,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    token_hash: str,
    expires_at: datetime,
    ip: str | None,
    user_agent: str | None,
) -> None:
    await session.execute(
        insert(RefreshToken).values(
            id=token_id,
            user_id=user_id,
            family_id=family_id,
            token_hash=token_hash,
            expires_at=expires_at,
            ip=ip,
            user_agent=user_agent,
        )
    )


async def refresh_token_by_hash(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    """Locks the row: two concurrent refreshes of one token serialize (the second one is reuse)."""
    stmt = (
        select(RefreshToken)
        .where(col(RefreshToken.token_hash) == token_hash)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def mark_rotated(
    session: AsyncSession, token_id: uuid.UUID, replaced_by: uuid.UUID, now: datetime
) -> None:
    await session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.id) == token_id)
        .values(status=RefreshTokenStatus.ROTATED.value, rotated_at=now, replaced_by_id=replaced_by)
    )


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, reason: str, now: datetime) -> int:
    """Revokes the family's still active tokens; the number revoked."""
    result = await session.execute(
        update(RefreshToken)
        .where(
            col(RefreshToken.family_id) == family_id,
            col(RefreshToken.status) == RefreshTokenStatus.ACTIVE.value,
        )
        .values(status=RefreshTokenStatus.REVOKED.value, revoked_at=now, revoked_reason=reason)
    )
    return _rowcount(result)


async def revoke_user_refresh_tokens(
    session: AsyncSession, user_id: uuid.UUID, reason: str, now: datetime
) -> int:
    result = await session.execute(
        update(RefreshToken)
        .where(
            col(RefreshToken.user_id) == user_id,
            col(RefreshToken.status) == RefreshTokenStatus.ACTIVE.value,
        )
        .values(status=RefreshTokenStatus.REVOKED.value, revoked_at=now, revoked_reason=reason)
    )
    return _rowcount(result)


# --- one-time tokens (password reset, email verification) -------------------------------------


async def supersede_pending(session: AsyncSession, model: type[OneTimeToken], user_id: uuid.UUID) -> int:
    result = await session.execute(
        update(model)
        .where(col(model.user_id) == user_id, col(model.status) == OneTimeTokenStatus.PENDING.value)
        .values(status=OneTimeTokenStatus.SUPERSEDED.value)
    )
    return _rowcount(result)


async def insert_one_time_token(
    session: AsyncSession,
    model: type[OneTimeToken],
    *,
    user_id: uuid.UUID,
    token_hash: str,
    expires_at: datetime,
    **extra: Any,
) -> uuid.UUID:
    token_id = uuid.uuid4()
    await session.execute(
        insert(model).values(
            id=token_id, user_id=user_id, token_hash=token_hash, expires_at=expires_at, **extra
        )
    )
    return token_id


async def one_time_token_by_hash(
    session: AsyncSession, model: type[OneTimeToken], token_hash: str
) -> OneTimeToken | None:
    """Locks the row, so a token is consumed once even by concurrent requests."""
    stmt = (
        select(model)
        .where(col(model.token_hash) == token_hash)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def mark_one_time_token_used(
    session: AsyncSession, model: type[OneTimeToken], token_id: uuid.UUID, now: datetime
) -> None:
    await session.execute(
        update(model)
        .where(col(model.id) == token_id)
        .values(status=OneTimeTokenStatus.USED.value, used_at=now)
    )


# --- security audit log ------------------------------------------------------------------------


async def insert_audit(
    session: AsyncSession,
    *,
    event_type: str,
    user_id: uuid.UUID | None,
    ip: str | None,
    user_agent: str | None,
    details: dict[str, Any],
    created_at: datetime | None = None,
) -> uuid.UUID:
    entry_id = uuid.uuid4()
    values: dict[str, Any] = {
        "id": entry_id,
        "event_type": event_type,
        "user_id": user_id,
        "ip": ip,
        "user_agent": user_agent,
        "details": details,
    }
    if created_at is not None:
        values["created_at"] = created_at
    await session.execute(insert(SecurityAuditLog).values(**values))
    return entry_id


# --- rate limits -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counter:
    count: int
    window_start: datetime


async def hit_counter(
    session: AsyncSession, scope: str, key: str, *, window: timedelta, now: datetime
) -> Counter:
    """Adds one to the (scope, key) counter of the current fixed window (a new window once the old
    one has ended). Atomic: concurrent hits on one key serialize on the row."""
    expired = col(RateLimit.window_start) <= now - window
    stmt = insert(RateLimit).values(scope=scope, key=key, window_start=now, count=1, updated_at=now)
    upsert = stmt.on_conflict_do_update(
        index_elements=["scope", "key"],
        set_={
            "count": case((expired, 1), else_=col(RateLimit.count) + 1),
            "window_start": case((expired, now), else_=col(RateLimit.window_start)),
            "updated_at": now,
        },
    ).returning(col(RateLimit.count), col(RateLimit.window_start))
    count, window_start = (await session.execute(upsert)).one()
    return Counter(count=count, window_start=window_start)


async def read_counter(
    session: AsyncSession, scope: str, key: str, *, window: timedelta, now: datetime
) -> Counter | None:
    """The counter of the current window, or None when there is none (or it has ended)."""
    row = (
        await session.execute(
            select(col(RateLimit.count), col(RateLimit.window_start)).where(
                col(RateLimit.scope) == scope,
                col(RateLimit.key) == key,
                col(RateLimit.window_start) > now - window,
            )
        )
    ).first()
    return None if row is None else Counter(count=row[0], window_start=row[1])


async def clear_counter(session: AsyncSession, scope: str, key: str) -> None:
    await session.execute(delete(RateLimit).where(col(RateLimit.scope) == scope, col(RateLimit.key) == key))


async def purge_counters(session: AsyncSession, older_than: datetime) -> int:
    """Served by ix_rate_limits_updated_at."""
    result = await session.execute(delete(RateLimit).where(col(RateLimit.updated_at) < older_than))
    return _rowcount(result)


# --- partitions --------------------------------------------------------------------------------


async def existing_tables(session: AsyncSession, names: list[str]) -> set[str]:
    rows = await session.execute(
        text("SELECT relname FROM pg_class WHERE relname = ANY(:names) AND relkind IN ('r', 'p')"),
        {"names": names},
    )
    return set(rows.scalars())


async def execute_ddl(session: AsyncSession, statements: list[str]) -> None:
    for statement in statements:
        await session.execute(text(statement))


async def use_utc(session: AsyncSession) -> None:
    """Month boundaries in partition DDL are then midnight UTC (transaction-local)."""
    await session.execute(text("SET LOCAL TimeZone = 'UTC'"))
