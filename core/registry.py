"""The ten services and the names that tie each one to its database, role, package and task queue.

This is the map a newcomer reads first: service ``cart`` owns database ``cart_db``, connects as role
``cart_svc``, keeps its rules in ``services/cart/`` and its activities in ``activities/cart.py``,
which a ``python worker.py cart`` process serves on task queue ``cart``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class ServiceInfo:
    name: str  # the service and its task queue
    package: str  # python package under services/ and module under activities/

    @property
    def database(self) -> str:
        return f"{self.name}_db"

    @property
    def role(self) -> str:
        return f"{self.name}_svc"

    @property
    def task_queue(self) -> str:
        return self.name

    @property
    def migrations_dir(self) -> str:
        return f"migrations/{self.name}"


SERVICES: Final[tuple[ServiceInfo, ...]] = tuple(
    ServiceInfo(name, "returns" if name == "return" else name)
    for name in (
        "auth",
        "user",
        "product",
        "order",
        "payment",
        "notification",
        "cart",
        "discount",
        "shipping",
        "return",
    )
)
SERVICE_NAMES: Final[tuple[str, ...]] = tuple(s.name for s in SERVICES)
BY_NAME: Final[dict[str, ServiceInfo]] = {s.name: s for s in SERVICES}

# The saga worker hosts every workflow and has no database connection.
SAGAS_TASK_QUEUE: Final = "sagas"


def service(name: str) -> ServiceInfo:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown service {name!r}; expected one of: {', '.join(SERVICE_NAMES)}") from None
