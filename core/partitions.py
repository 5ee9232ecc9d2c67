"""DDL for the seed's partitioned tables, shared by the migrations (initial partitions) and the
partition-maintenance activities (future monthly partitions, created before they are needed).

Naming: hash partitions ``<parent>_p<remainder>``; monthly partitions ``<parent>_p<YYYY>_<MM>``.
Retention: a service may drop whole months older than its retention setting
(``expired_monthly_partitions``, ``drop_partition_ddl``): detach, then drop, which is what monthly
partitions are for (no bulk DELETE, no bloat). 0 months keeps everything.
There is deliberately no DEFAULT partition: a row for a month without a partition fails loudly
instead of silently piling up where a later partition could no longer be attached.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

HASH_PARTITIONS = 8
MONTHS_AHEAD = 3


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(first_of_month: date, months: int) -> date:
    index = first_of_month.year * 12 + first_of_month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def monthly_partition_name(parent: str, first_of_month: date) -> str:
    return f"{parent}_p{first_of_month.year:04d}_{first_of_month.month:02d}"


def monthly_partition_ddl(parent: str, first_of_month: date) -> str:
    start, end = first_of_month, add_months(first_of_month, 1)
    return (
        f"CREATE TABLE IF NOT EXISTS {monthly_partition_name(parent, start)} PARTITION OF {parent} "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    )


def monthly_partitions_ddl(
    parent: str, today: date, *, months_back: int = 1, months_ahead: int = MONTHS_AHEAD
) -> list[str]:
    """Statements creating the partitions from ``months_back`` before ``today``'s month to ``months_ahead`` after."""
    first = month_start(today)
    return [
        monthly_partition_ddl(parent, add_months(first, k)) for k in range(-months_back, months_ahead + 1)
    ]


async def partition_names(session: AsyncSession, parent: str) -> set[str]:
    """The partitions ``parent`` has now, from the catalogue."""
    rows = await session.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :parent"
        ),
        {"parent": parent},
    )
    return set(rows.scalars())


def hash_partitions_ddl(parent: str, modulus: int = HASH_PARTITIONS) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {parent}_p{r} PARTITION OF {parent} "
        f"FOR VALUES WITH (MODULUS {modulus}, REMAINDER {r})"
        for r in range(modulus)
    ]


def expired_monthly_partitions(names: Iterable[str], parent: str, today: date, keep_months: int) -> list[str]:
    """The monthly partitions of ``parent`` entirely before the ``keep_months`` whole months preceding
    ``today``'s month (those months and the current one are kept), oldest first. ``keep_months`` 0:
    none (retention off). Names that are not monthly partitions of ``parent`` are never returned."""
    if keep_months <= 0:
        return []
    oldest_kept = add_months(month_start(today), -keep_months)
    pattern = re.compile(rf"{re.escape(parent)}_p(\d{{4}})_(\d{{2}})")
    expired: list[tuple[date, str]] = []
    for name in names:
        found = pattern.fullmatch(name)
        if found and 1 <= int(found[2]) <= 12:
            month = date(int(found[1]), int(found[2]), 1)
            if month < oldest_kept:
                expired.append((month, name))
    return [name for _, name in sorted(expired)]


def drop_partition_ddl(parent: str, name: str) -> list[str]:
    """Detach (the parent stops routing to it and its rows leave every query), then drop."""
    return [f"ALTER TABLE {parent} DETACH PARTITION {name}", f"DROP TABLE {name}"]


async def drop_partitions(
    session: AsyncSession,
    parent: str,
    names: list[str],
    *,
    before_each: Callable[[str], Awaitable[None]] | None = None,
    lock_wait: str = "10s",
) -> None:
    """Detach and drop these partitions of ``parent`` in the session's transaction, ``before_each``
    first for each (e.g. rows elsewhere that refer to it). A name that is not a partition of
    ``parent`` now is refused (names go into DDL). Waits at most ``lock_wait`` for a table lock, then
    fails: a maintenance run tries again later rather than queue behind, and in front of, the writers."""
    if not names:
        return
    existing = await partition_names(session, parent)
    unknown = [name for name in names if name not in existing]
    if unknown:
        raise ValueError(f"not partitions of {parent}: {', '.join(unknown)}")
    await session.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": lock_wait})
    for name in names:
        if before_each is not None:
            await before_each(name)
        for ddl in drop_partition_ddl(parent, name):
            await session.execute(text(ddl))
