"""Tables of ``order_db``. Only the order service reads or writes them."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from core.ledger import ledger_table


class OrderModel(SQLModel, registry=registry()):
    """Base class of every order_db table; its metadata is what migrations/order builds."""


metadata = OrderModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)
