"""A lazily (re)connecting Temporal client for the API process: the API starts, and answers /readyz
truthfully, even while Temporal is down."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from core.settings import Settings
from core.temporal import connect


class TemporalUnavailable(Exception):
    pass


class LazyTemporalClient:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def get(self, timeout_s: float = 3.0) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    async with asyncio.timeout(timeout_s):
                        self._client = await connect(self._settings)
                except (TimeoutError, RuntimeError, OSError) as exc:
                    raise TemporalUnavailable(
                        f"Temporal at {self._settings.temporal_address} is unreachable: {exc or 'timeout'}"
                    ) from exc
            return self._client
