"""Tables of ``payment_db``. Only the payment service reads or writes them."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from core.ledger import ledger_table


class PaymentModel(SQLModel, registry=registry()):
    """Base class of every payment_db table; its metadata is what migrations/payment builds."""


metadata = PaymentModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)
