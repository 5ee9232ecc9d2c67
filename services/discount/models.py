"""Tables of ``discount_db``. Only the discount service reads or writes them."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from core.ledger import ledger_table


class DiscountModel(SQLModel, registry=registry()):
    """Base class of every discount_db table; its metadata is what migrations/discount builds."""


metadata = DiscountModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)
