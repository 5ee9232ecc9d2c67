"""All SQL of the notification service. Functions take the caller's ``AsyncSession`` and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from core import partitions
from core.errors import IdempotencyKeyReused
from core.ledger import request_fingerprint
from services.notification.models import (
    PARTITIONED_TABLE,
    EmailTemplate,
    Notification,
    NotificationLog,
    NotificationPreference,
    ledger,
)

R = TypeVar("R", bound=BaseModel)


async def peek_ledger(
    session: AsyncSession, *, key: str, operation: str, request: BaseModel, result_type: type[R]
) -> R | None:
    """The recorded result of ``key`` if that operation already completed (same checks as run_once)."""
    row = (
        await session.execute(
            select(ledger.c.operation, ledger.c.request_hash, ledger.c.result).where(ledger.c.key == key)
        )
    ).first()
    if row is None or row.result is None:
        return None
    if row.operation != operation or row.request_hash != request_fingerprint(request):
        raise IdempotencyKeyReused(
            f"idempotency key {key!r} was already used for a different {row.operation} request", key=key
        )
    return result_type.model_validate(row.result)


async def lock_key(session: AsyncSession, key: str) -> None:
    """Serialize work on one idempotency key until the transaction ends."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"notification:{key}"}
    )


# -- notifications ------------------------------------------------------------------------------


async def get_notification(
    session: AsyncSession, notification_id: uuid.UUID, *, for_update: bool = False
) -> Notification | None:
    """By id alone: one primary-key probe per partition (the id is derived from the key)."""
    stmt = (
        select(Notification)
        .where(col(Notification.id) == notification_id)
        .execution_options(populate_existing=True)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).first()


async def insert_notification(session: AsyncSession, values: dict[str, Any]) -> Notification:
    session.add(Notification(**values))
    await session.flush()
    found = await get_notification(session, values["id"])
    assert found is not None
    return found


async def update_notification(
    session: AsyncSession, notification_id: uuid.UUID, created_at: datetime, values: dict[str, Any]
) -> None:
    await session.execute(
        update(Notification)
        .where(col(Notification.id) == notification_id, col(Notification.created_at) == created_at)
        .values(**values, updated_at=func.now())
        .execution_options(synchronize_session=False)
    )


async def add_log(session: AsyncSession, **values: Any) -> None:
    session.add(NotificationLog(**values))
    await session.flush()


async def logs(session: AsyncSession, notification_id: uuid.UUID) -> Sequence[NotificationLog]:
    stmt = (
        select(NotificationLog)
        .where(col(NotificationLog.notification_id) == notification_id)
        .order_by(col(NotificationLog.attempt))
    )
    return (await session.scalars(stmt)).all()


# -- templates ----------------------------------------------------------------------------------


async def template(
    session: AsyncSession, key: str, locale: str, *, active_only: bool = True
) -> EmailTemplate | None:
    stmt = select(EmailTemplate).where(col(EmailTemplate.key) == key, col(EmailTemplate.locale) == locale)
    if active_only:
        stmt = stmt.where(col(EmailTemplate.is_active).is_(True))
    return (await session.scalars(stmt)).first()


async def templates(session: AsyncSession, key: str | None = None) -> Sequence[EmailTemplate]:
    stmt = select(EmailTemplate).order_by(col(EmailTemplate.key), col(EmailTemplate.locale))
    if key is not None:
        stmt = stmt.where(col(EmailTemplate.key) == key)
    return (await session.scalars(stmt)).all()


# -- preferences --------------------------------------------------------------------------------


async def preferences(session: AsyncSession, user_id: uuid.UUID) -> dict[tuple[str, str], bool]:
    rows = await session.execute(
        select(
            col(NotificationPreference.category),
            col(NotificationPreference.channel),
            col(NotificationPreference.enabled),
        ).where(col(NotificationPreference.user_id) == user_id)
    )
    return {(category, channel): enabled for category, channel, enabled in rows}


async def upsert_preference(
    session: AsyncSession, user_id: uuid.UUID, category: str, channel: str, enabled: bool
) -> None:
    stmt = insert(NotificationPreference).values(
        id=uuid.uuid4(), user_id=user_id, category=category, channel=channel, enabled=enabled
    )
    await session.execute(
        stmt.on_conflict_do_update(
            constraint="uq_notification_preferences_user_category_channel",
            set_={"enabled": stmt.excluded.enabled, "updated_at": func.now()},
        )
    )


# -- partitions ---------------------------------------------------------------------------------


async def existing_partitions(session: AsyncSession, parent: str = PARTITIONED_TABLE) -> set[str]:
    return await partitions.partition_names(session, parent)


async def drop_monthly_partitions(session: AsyncSession, names: list[str]) -> None:
    """Drop these monthly partitions of ``notifications``, the delivery attempts of their notifications
    first (the logs' foreign key would refuse the detach). Waits at most 10 s for the table locks:
    the daily run tries again tomorrow rather than hold up the mail."""

    async def delete_logs(name: str) -> None:  # a name checked against the catalogue
        await session.execute(
            text(
                f"DELETE FROM notification_logs l USING {name} n "
                "WHERE l.notification_id = n.id AND l.notification_created_at = n.created_at"
            )
        )

    await partitions.drop_partitions(session, PARTITIONED_TABLE, names, before_each=delete_logs)


async def create_monthly_partitions(session: AsyncSession, today: date, months_ahead: int) -> list[str]:
    """Create the missing monthly partitions from this month to ``months_ahead``; return the new ones."""
    # One maintenance run at a time: CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('notifications_partitions'))"))
    before = await existing_partitions(session)
    for ddl in partitions.monthly_partitions_ddl(
        PARTITIONED_TABLE, today, months_back=0, months_ahead=months_ahead
    ):
        await session.execute(text(ddl))
    return sorted(await existing_partitions(session) - before)
