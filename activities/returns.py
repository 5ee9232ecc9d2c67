"""Activities of the return service, served on task queue ``return`` by ``python worker.py return``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.db import SessionFactory
from core.settings import Settings

TASK_QUEUE = "return"


class ReturnActivities:
    """Adapts ``services.returns`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py return`` registers (besides ``return.ping``)."""
    acts = ReturnActivities(sessions)
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
