"""Tables of ``user_db``. Only the user service reads or writes them."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from core.ledger import ledger_table


class UserModel(SQLModel, registry=registry()):
    """Base class of every user_db table; its metadata is what migrations/user builds."""


metadata = UserModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata, "event_logs")
