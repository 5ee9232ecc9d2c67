"""Activities of the order service, served on task queue ``order`` by ``python worker.py order``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.db import SessionFactory
from core.settings import Settings

TASK_QUEUE = "order"


class OrderActivities:
    """Adapts ``services.order`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py order`` registers (besides ``order.ping``)."""
    acts = OrderActivities(sessions)
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
