"""Tables of ``shipping_db``. Only the shipping service reads or writes them."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from core.ledger import ledger_table


class ShippingModel(SQLModel, registry=registry()):
    """Base class of every shipping_db table; its metadata is what migrations/shipping builds."""


metadata = ShippingModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)
