"""Tables of ``product_db``. Only the product service reads or writes them."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from core.ledger import ledger_table


class ProductModel(SQLModel, registry=registry()):
    """Base class of every product_db table; its metadata is what migrations/product builds."""


metadata = ProductModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)
