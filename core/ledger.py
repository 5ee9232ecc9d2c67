"""The idempotency ledger every database carries (``event_logs`` in user_db, as the seed names it).

A writing operation records its key in the same transaction as its effect. Called again with the same
key it returns the first result without doing anything; called with the same key but a different
request it is refused. Two concurrent calls with one key serialize on the ledger's primary key: the
second waits for the first transaction and then returns its result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy import Column, DateTime, MetaData, String, Table, func, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import IdempotencyKeyReused

R = TypeVar("R", bound=BaseModel)


def ledger_table(metadata: MetaData, name: str = "idempotency_keys") -> Table:
    return Table(
        name,
        metadata,
        Column("key", String(255), primary_key=True, comment="<workflow id>:<step> or a client key"),
        Column("operation", String(100), nullable=False),
        Column("request_hash", String(64), nullable=False),
        Column("result", JSONB, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("completed_at", DateTime(timezone=True), nullable=True),
        comment="Idempotency ledger: one row per writing operation key, written with its effect",
    )


def request_fingerprint(request: BaseModel) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


async def run_once(
    session: AsyncSession,
    ledger: Table,
    *,
    key: str,
    operation: str,
    request: BaseModel,
    result_type: type[R],
    effect: Callable[[], Awaitable[R]],
) -> R:
    """Run ``effect`` once per ``key``. Must be called inside the transaction that holds the effect."""
    fingerprint = request_fingerprint(request)
    claimed = await session.execute(
        insert(ledger)
        .values(key=key, operation=operation, request_hash=fingerprint)
        .on_conflict_do_nothing(index_elements=[ledger.c.key])
        .returning(ledger.c.key)
    )
    if claimed.first() is None:
        row = (
            await session.execute(
                select(ledger.c.operation, ledger.c.request_hash, ledger.c.result).where(ledger.c.key == key)
            )
        ).one()
        if row.operation != operation or row.request_hash != fingerprint:
            raise IdempotencyKeyReused(
                f"idempotency key {key!r} was already used for a different {row.operation} request",
                key=key,
            )
        return result_type.model_validate(row.result)
    result = await effect()
    await session.execute(
        update(ledger)
        .where(ledger.c.key == key)
        .values(result=result.model_dump(mode="json"), completed_at=func.now())
    )
    return result
