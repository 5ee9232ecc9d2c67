"""Activities of the discount service, served on task queue ``discount`` by ``python worker.py discount``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.db import SessionFactory
from core.settings import Settings

TASK_QUEUE = "discount"


class DiscountActivities:
    """Adapts ``services.discount`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py discount`` registers (besides ``discount.ping``)."""
    acts = DiscountActivities(sessions)
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
