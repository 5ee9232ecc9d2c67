"""Tables of ``return_db``. Only the return service reads or writes them."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from core.ledger import ledger_table


class ReturnModel(SQLModel, registry=registry()):
    """Base class of every return_db table; its metadata is what migrations/return builds."""


metadata = ReturnModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)
