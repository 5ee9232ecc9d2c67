"""Tables of ``auth_db``. Only the auth service reads or writes them."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from core.ledger import ledger_table


class AuthModel(SQLModel, registry=registry()):
    """Base class of every auth_db table; its metadata is what migrations/auth builds."""


metadata = AuthModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)
