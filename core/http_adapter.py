"""The HTTP plumbing every outside-world adapter shares (PSP, carrier): one pooled client, the
idempotency key header, and one mapping of transport failures and answers to errors.

A subclass names its provider, its ``unavailable`` error (retryable: the call may or may not have
happened, retry with the same key) and maps refusals (4xx) to its own business errors."""

from __future__ import annotations

from types import TracebackType
from typing import Any, ClassVar, NoReturn, Self

import httpx

IDEMPOTENCY_HEADER = "Idempotency-Key"


class ProviderError(Exception):
    """A failure that is not a business refusal. ``retryable`` tells whether to try again."""

    retryable: ClassVar[bool] = False

    def __init__(
        self, message: str, *, status_code: int | None = None, problem: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.status_code = status_code
        self.problem = problem or {}


class JsonHttpAdapter:
    provider_name: ClassVar[str] = "provider"
    unavailable: ClassVar[type[ProviderError]] = ProviderError

    def __init__(
        self, base_url: str, timeout: float = 10.0, *, client: httpx.AsyncClient | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        name, unavailable = self.provider_name, self.unavailable
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key is not None else {}
        try:
            response = await self._client.request(
                method, self.base_url + path, json=json, params=params, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            raise unavailable(f"{name} timed out: {method} {path}") from exc
        except httpx.TransportError as exc:
            raise unavailable(f"{name} unreachable: {method} {path}: {exc!r}") from exc
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if response.status_code >= 500 or response.status_code in (408, 429):
            problem = body if isinstance(body, dict) else {}
            detail = f": {problem['detail']}" if problem.get("detail") else ""
            raise unavailable(
                f"{name} answered {response.status_code} to {method} {path}{detail}",
                status_code=response.status_code,
                problem=problem,
            )
        if response.is_success:
            if body is None:
                raise unavailable(
                    f"{name} sent an unreadable {response.status_code} answer to {method} {path}"
                )
            return body
        self._raise_refusal(response.status_code, body if isinstance(body, dict) else {}, method, path)

    @staticmethod
    def _raise_refusal(status: int, problem: dict[str, Any], method: str, path: str) -> NoReturn:
        raise NotImplementedError
