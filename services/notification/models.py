"""Tables of ``notification_db``. Only the notification service reads or writes them."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from core.ledger import ledger_table


class NotificationModel(SQLModel, registry=registry()):
    """Base class of every notification_db table; its metadata is what migrations/notification builds."""


metadata = NotificationModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)
