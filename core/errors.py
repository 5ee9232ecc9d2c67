"""Business refusals. One class per refusal; activities raise them as non-retryable Temporal errors,
the API renders them as RFC 9457 problem details. The class name is the stable error ``type``."""

from __future__ import annotations

from typing import Any, ClassVar

from temporalio.exceptions import ApplicationError


class BusinessError(Exception):
    """A refusal by a service's rules: retrying the same request cannot succeed."""

    status: ClassVar[int] = 409  # HTTP status when it reaches the API
    title: ClassVar[str] = "Request refused"

    def __init__(self, detail: str, **context: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.context = context

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_application_error(self) -> ApplicationError:
        return ApplicationError(self.detail, self.context, type=self.type, non_retryable=True)


class NotFound(BusinessError):
    status = 404
    title = "Not found"


class InvalidRequest(BusinessError):
    status = 422
    title = "Invalid request"


class Conflict(BusinessError):
    status = 409
    title = "Conflict"


class IdempotencyKeyReused(BusinessError):
    """The same idempotency key arrived with a different request."""

    status = 422
    title = "Idempotency key reused with a different request"
