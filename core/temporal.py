"""Connecting to Temporal the same way from every process, and the project's search attributes."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter

from core.settings import Settings

# Typed search attributes, registered when the dev server starts (devstack) and by `compose.yaml`.
ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
SAGA_STEP = SearchAttributeKey.for_keyword("SagaStep")
ORDER_TOTAL = SearchAttributeKey.for_int("OrderTotal")
NEEDS_ATTENTION = SearchAttributeKey.for_bool("NeedsAttention")
RETURN_ID = SearchAttributeKey.for_keyword("ReturnId")

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (
    ORDER_ID,
    CUSTOMER_ID,
    ORDER_STATUS,
    SAGA_STEP,
    ORDER_TOTAL,
    NEEDS_ATTENTION,
    RETURN_ID,
)

_CLI_TYPE_NAMES = {
    "KEYWORD": "Keyword",
    "INT": "Int",
    "BOOL": "Bool",
    "TEXT": "Text",
    "DATETIME": "Datetime",
}


def search_attribute_cli_args() -> list[str]:
    """``--search-attribute Name=Type`` flags for ``temporal server start-dev``."""
    args: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}={_CLI_TYPE_NAMES[key.indexed_value_type.name]}"]
    return args


async def connect(settings: Settings) -> Client:
    tls: TLSConfig | bool = False
    if settings.temporal_tls:
        tls = TLSConfig(
            server_root_ca_cert=_read(settings.temporal_tls_ca_path),
            client_cert=_read(settings.temporal_tls_cert_path),
            client_private_key=_read(settings.temporal_tls_key_path),
        )
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=tls if api_key is None else (tls or True),
        api_key=api_key,
        data_converter=pydantic_data_converter,
    )


def _read(path: object) -> bytes | None:
    from pathlib import Path

    return Path(path).read_bytes() if isinstance(path, Path) else None
