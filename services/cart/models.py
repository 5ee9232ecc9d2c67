"""Tables of ``cart_db``. Only the cart service reads or writes them."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from core.ledger import ledger_table


class CartModel(SQLModel, registry=registry()):
    """Base class of every cart_db table; its metadata is what migrations/cart builds."""


metadata = CartModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)
