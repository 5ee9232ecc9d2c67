"""A small per-client token-bucket rate limiter for expensive endpoints, as a FastAPI dependency.

Each client has a bucket of ``burst`` tokens refilled at ``rate_per_s``; a request takes one token, an
empty bucket answers 429 ``application/problem+json`` with ``Retry-After`` (whole seconds until a token
is back). The client is the signed-in user when the request carries a valid access token, else the
peer address. Buckets live in the API process (several API processes each limit on their own, which
is what "a sane limit" needs; a global quota would live in a shared store) and at most ``max_clients``
are kept: the least recently used are forgotten first (a forgotten client starts with a full bucket).

Usage::

    SearchLimit = rate_limited("search", lambda s: (s.api_search_rate_per_s, s.api_search_burst))

    @router.get("/products", dependencies=[SearchLimit])
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request

from api.deps import SettingsDep
from api.problems import problem_responses
from core.errors import BusinessError
from core.settings import Settings
from services.auth.tokens import InvalidAccessToken, verify_access_token

DEFAULT_MAX_CLIENTS = 10_000


def rate_limited_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``problem_responses(*statuses, 429)`` with the 429's ``Retry-After`` header documented."""
    responses = problem_responses(*statuses, 429)
    responses[429] = {
        **responses[429],
        "headers": {
            "Retry-After": {
                "description": "whole seconds until the client may try again",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    }
    return responses


class TooManyRequests(BusinessError):
    """The client exhausted its request budget for this endpoint; retry after ``retry_after_seconds``."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after_seconds: int, **context: Any) -> None:
        super().__init__(detail, retry_after_seconds=retry_after_seconds, **context)
        self.retry_after_seconds = retry_after_seconds


class TokenBucket:
    """Buckets per client key. Not thread-safe: the API runs it on its single event loop."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate_per_s > 0, burst >= 1 and max_clients >= 1 are required")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when granted, else the seconds until one is available."""
        now = self._clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate_per_s
        self._buckets[key] = (tokens, now)  # most recently used last
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def client_key(request: Request, settings: Settings) -> str:
    """The signed-in user (a valid bearer access token), else the peer address."""
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token:
        try:
            return f"user:{verify_access_token(settings, token.strip()).sub}"
        except InvalidAccessToken:  # limited by address like anyone else
            pass
    return f"addr:{request.client.host if request.client else 'unknown'}"


def rate_limited(name: str, limits: Callable[[Settings], tuple[float, int]]) -> Any:
    """A route dependency limiting each client to ``limits(settings)`` = (rate per second, burst)."""

    async def check(request: Request, settings: SettingsDep) -> None:
        registry: dict[str, TokenBucket] | None = getattr(request.app.state, "rate_limiters", None)
        if registry is None:
            registry = {}
            request.app.state.rate_limiters = registry
        bucket = registry.get(name)
        if bucket is None:
            rate, burst = limits(settings)
            bucket = registry[name] = TokenBucket(rate, burst)
        wait = bucket.take(client_key(request, settings))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyRequests(
                f"too many {name} requests; retry in {seconds} s", retry_after_seconds=seconds, limit=name
            )

    return Depends(check)
