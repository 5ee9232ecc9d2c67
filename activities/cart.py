"""Activities of the cart service, served on task queue ``cart`` by ``python worker.py cart``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.db import SessionFactory
from core.settings import Settings

TASK_QUEUE = "cart"


class CartActivities:
    """Adapts ``services.cart`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py cart`` registers (besides ``cart.ping``)."""
    acts = CartActivities(sessions)
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
