"""The two patterns every service activity uses: an idempotent write in one transaction, and a read;
both turn business refusals into non-retryable Temporal errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import SessionFactory
from core.errors import BusinessError
from core.ledger import run_once

R = TypeVar("R", bound=BaseModel)
T = TypeVar("T")


@contextmanager
def business_errors() -> Iterator[None]:
    """Re-raise a BusinessError as a non-retryable ApplicationError (type = the error class name)."""
    try:
        yield
    except BusinessError as exc:
        raise exc.to_application_error() from exc


async def idempotent_write(
    sessions: SessionFactory,
    ledger: Table,
    *,
    key: str,
    operation: str,
    request: BaseModel,
    result_type: type[R],
    effect: Callable[[AsyncSession], Awaitable[R]],
) -> R:
    """Run ``effect`` and record ``key`` in the ledger in one transaction; the same key again returns
    the first result without running ``effect``."""
    with business_errors():
        async with sessions() as session, session.begin():
            return await run_once(
                session,
                ledger,
                key=key,
                operation=operation,
                request=request,
                result_type=result_type,
                effect=lambda: effect(session),
            )


async def read(sessions: SessionFactory, query: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run a read in its own short transaction."""
    with business_errors():
        async with sessions() as session, session.begin():
            return await query(session)
