"""Saga mode: complete checkouts through the REST API, as a shopper's client drives them.

One operation = ``POST /v1/checkout`` (fresh ``Idempotency-Key``, the shopper's bearer token, their
saved address and card, the demo ``US:standard`` shipping method) and then a wait until the checkout
saga reports the order CONFIRMED with its confirmation email sent: saga status ``confirmed`` and step
``awaiting shipment``. The saga sets ``confirmed`` just before its email activity; waiting for the
email as well makes the saga do exactly the twelve steps the direct mode does. Any other terminal
status (failed, cancelled) is an error with the saga's failure reason.

How the wait looks (``--saga-wait``):

- ``rest``: ``GET /v1/orders/{id}`` every ``--poll-interval`` seconds, the shopper's
  status URL (the order row plus a workflow query for the live saga state);
- ``describe``: the workflow's search attributes ``OrderStatus`` / ``SagaStep`` through the
  benchmark's own Temporal client (``DescribeWorkflowExecution``: a server read, no worker involved),
  every ``--poll-interval`` seconds;
- ``history`` (default): no polling: the benchmark's Temporal client follows the workflow's history with a
  long poll (``GetWorkflowExecutionHistory`` with ``waitNewEvent``) and stops at the search-attribute
  upsert that sets ``SagaStep`` to ``awaiting shipment`` (or ``OrderStatus`` to failed/cancelled).

Cart filling is not timed (see bench.platform.CartFiller). Shipping: the platform runs with
``START_SHIPPING=false`` unless ``--start-shipping`` is given, so a confirmed checkout does not go
on to buy labels; the issue measures checkout to CONFIRMED.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from bench.harness import Mode, ModeContext, WorkflowIdLog
from bench.platform import BenchShopper, Platform, for_run

DONE_STEP = "awaiting shipment"
FAILED = ("failed", "cancelled", "compensating")


class CheckoutFailed(Exception):
    """The API refused the checkout, or the saga ended other than confirmed."""


def add_arguments(group: Any) -> None:
    group.add_argument(
        "--saga-wait",
        choices=["rest", "describe", "history"],
        default="history",
        help="how a shopper waits for CONFIRMED: poll GET /v1/orders/{id} (rest), poll the "
        "workflow's search attributes (describe), or follow its history (history; no polling)",
    )
    group.add_argument(
        "--poll-interval", type=float, default=0.05, help="seconds between two status reads (default 0.05)"
    )


class SagaCheckout:
    def __init__(
        self,
        http: httpx.AsyncClient,
        temporal_client: Any,
        settings: Any,
        method_id: uuid.UUID,
        *,
        wait: str,
        poll_s: float,
        coupon: str | None,
    ) -> None:
        self.http = http
        self.client = temporal_client
        self.settings = settings
        self.method_id = method_id
        self.wait = wait
        self.poll_s = poll_s
        self.coupon = coupon
        self.polls = 0

    async def start(self, shopper: BenchShopper) -> tuple[str, str]:
        """POST /v1/checkout; (order id, workflow id)."""
        body: dict[str, Any] = {
            "shipping_address_id": str(shopper.address_id),
            "shipping_method_id": str(self.method_id),
            "payment_method_id": str(shopper.payment_method_id),
        }
        if self.coupon:
            body["coupon_code"] = self.coupon
        headers = {**shopper.headers(self.settings), "Idempotency-Key": str(uuid.uuid4())}
        response = await self.http.post("/v1/checkout", json=body, headers=headers)
        if response.status_code != 202:
            raise CheckoutFailed(f"POST /v1/checkout answered {response.status_code}: {response.text[:200]}")
        accepted = response.json()
        return str(accepted["order_id"]), str(accepted["workflow_id"])

    async def wait_rest(self, shopper: BenchShopper, order_id: str) -> None:
        while True:
            self.polls += 1
            response = await self.http.get(f"/v1/orders/{order_id}", headers=shopper.headers(self.settings))
            if response.status_code == 200:
                saga = response.json().get("saga") or {}
                status = saga.get("status")
                if status == "confirmed" and saga.get("step") == DONE_STEP:
                    return
                if status in FAILED:
                    raise CheckoutFailed(
                        f"checkout {status}: {saga.get('failure_type')}: {saga.get('failure_reason')}"
                    )
            elif response.status_code != 404:  # 404: not yet visible (the saga has not run its first task)
                raise CheckoutFailed(f"GET /v1/orders/{order_id} answered {response.status_code}")
            await asyncio.sleep(self.poll_s)

    async def wait_describe(self, workflow_id: str) -> None:
        from core.temporal import ORDER_STATUS, SAGA_STEP

        handle = self.client.get_workflow_handle(workflow_id)
        while True:
            self.polls += 1
            attrs = (await handle.describe()).typed_search_attributes
            status, step = attrs.get(ORDER_STATUS), attrs.get(SAGA_STEP)
            if status == "confirmed" and step == DONE_STEP:
                return
            if status in FAILED:
                query = await handle.query("query_status")
                raise CheckoutFailed(
                    f"checkout {status}: {query.get('failure_type')}: {query.get('failure_reason')}"
                )
            await asyncio.sleep(self.poll_s)

    async def wait_history(self, workflow_id: str) -> None:
        from temporalio.api.enums.v1 import EventType

        upsert = EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
        seen: dict[str, Any] = {}
        handle = self.client.get_workflow_handle(workflow_id)
        async for event in handle.fetch_history_events(wait_new_event=True):
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                fields = event.workflow_execution_started_event_attributes.search_attributes.indexed_fields
            elif event.event_type == upsert:
                fields = (
                    event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
                )
            else:
                continue
            self.polls += 1
            for key in ("OrderStatus", "SagaStep"):
                if key in fields:
                    seen[key] = json.loads(fields[key].data)
            if seen.get("OrderStatus") == "confirmed" and seen.get("SagaStep") == DONE_STEP:
                return
            if seen.get("OrderStatus") in FAILED:
                raise CheckoutFailed(f"checkout {seen['OrderStatus']} at step {seen.get('SagaStep')}")
        raise CheckoutFailed(f"checkout workflow closed before confirmation: {seen}")

    async def run(self, shopper: BenchShopper) -> str:
        order_id, workflow_id = await self.start(shopper)
        if self.wait == "describe":
            await self.wait_describe(workflow_id)
        elif self.wait == "history":
            await self.wait_history(workflow_id)
        else:
            await self.wait_rest(shopper, order_id)
        return workflow_id


@contextlib.asynccontextmanager
async def saga_mode(ctx: ModeContext) -> AsyncIterator[Mode]:
    """Mode factory (bench.harness.ModeFactory): shoppers checking out through the API."""
    if ctx.temporal is None:
        raise RuntimeError("the saga mode needs a Temporal server")
    platform: Platform = for_run(ctx.run_id)
    concurrency = int(getattr(ctx.options, "concurrency", 1))
    filler = platform.cart_filler(concurrency, seed=13)
    limits = httpx.Limits(max_connections=concurrency * 2 + 4, max_keepalive_connections=concurrency * 2 + 4)
    async with httpx.AsyncClient(base_url=platform.api_url, timeout=30, limits=limits) as http:
        try:
            assert platform.shipping_method_id is not None
            checkout = SagaCheckout(
                http,
                ctx.temporal.client,
                platform.settings,
                platform.shipping_method_id,
                wait=str(getattr(ctx.options, "saga_wait", "rest")),
                poll_s=float(getattr(ctx.options, "poll_interval", 0.05)),
                coupon=getattr(ctx.options, "coupon", None),
            )
            await filler.prefill()
            ids = WorkflowIdLog()

            async def operation(user: int) -> None:
                shopper = await filler.take(user)
                try:
                    ids.add(await checkout.run(shopper))
                finally:
                    filler.refill(shopper)

            sources = platform.cpu_sources(workers=True)
            if ctx.temporal.processes is not None:
                sources.append(ctx.temporal.processes)
            config: dict[str, Any] = {
                "operation": "POST /v1/checkout, then wait for saga status confirmed and the "
                "confirmation email sent (step 'awaiting shipment')",
                "wait": checkout.wait,
                "poll_interval_s": checkout.poll_s,
                "coupon": checkout.coupon,
                **platform.options.describe(),
                "db_pool_per_worker": f"{platform.settings.db_pool_size} + "
                f"{platform.settings.db_max_overflow} overflow",
                "platform_started_in_s": round(platform.started_in_s, 1),
                "api_url": platform.api_url,
                "postgres_port": platform.settings.postgres_port,
                "platform_data_dir": str(platform.settings.data_dir),  # deleted after the run
            }
            yield Mode(operation=operation, cpu_sources=sources, workflow_ids=ids, config=config)
            config.update(filler.stats())
            config["status_reads"] = checkout.polls
            try:
                platform.check_alive()
            except RuntimeError as exc:
                config["dead_processes"] = str(exc)
        finally:
            await filler.close()
