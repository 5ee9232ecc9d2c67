"""``maintenance``: the periodic sweeps the services offer, run from a Temporal schedule (every
the MAINTENANCE_INTERVAL_S setting, created by ``worker.ensure_schedules``):

- ``product.expire_reservations``: inventory reservations past their expiry give their units back;
- ``discount.release_expired``: coupon reservations past their expiry free their slot;
- ``cart.abandon_expired``: active carts past their expiry become abandoned.

The three run in parallel, each on its service's task queue; each handles one batch per run and the
next run takes the rest. They are naturally idempotent (a second sweep finds nothing left), so they
take no idempotency key. One sweep failing does not stop the others: the run fails afterwards,
naming it, and the next scheduled run tries again.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.cart import AbandonExpiredInput, CartActivities
    from activities.discount import DiscountActivities, ReleaseExpiredInput
    from activities.product import ExpireReservationsInput, ProductActivities


class MaintenanceInput(BaseModel):
    coupon_release_limit: int = Field(default=500, ge=1, le=10_000)
    cart_abandon_batch: int = Field(default=1000, ge=1, le=10_000)
    activity_timeout_s: float = Field(default=60, gt=0)


class MaintenanceResult(BaseModel):
    expired_reservations: int
    released_coupon_reservations: int
    abandoned_carts: int


@workflow.defn(name="maintenance")
class MaintenanceWorkflow:
    @workflow.run
    async def run(self, inp: MaintenanceInput) -> MaintenanceResult:
        timeout = timedelta(seconds=inp.activity_timeout_s)
        # a few tries; the schedule runs again soon anyway
        retry = RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=5)
        results = await asyncio.gather(
            workflow.execute_activity_method(
                ProductActivities.expire_reservations,
                ExpireReservationsInput(),
                task_queue="product",
                summary="product: expire overdue inventory reservations",
                start_to_close_timeout=timeout,
                retry_policy=retry,
            ),
            workflow.execute_activity_method(
                DiscountActivities.release_expired,
                ReleaseExpiredInput(limit=inp.coupon_release_limit),
                task_queue="discount",
                summary="discount: release overdue coupon reservations",
                start_to_close_timeout=timeout,
                retry_policy=retry,
            ),
            workflow.execute_activity_method(
                CartActivities.abandon_expired,
                AbandonExpiredInput(batch=inp.cart_abandon_batch),
                task_queue="cart",
                summary="cart: abandon expired carts",
                start_to_close_timeout=timeout,
                retry_policy=retry,
            ),
            return_exceptions=True,
        )
        failed = [
            f"{name}: {result}"
            for name, result in zip(("product", "discount", "cart"), results, strict=True)
            if isinstance(result, BaseException)
        ]
        if failed:
            raise ApplicationError("maintenance sweeps failed: " + "; ".join(failed), non_retryable=True)
        expired, released, abandoned = results
        assert not isinstance(expired, BaseException)
        assert not isinstance(released, BaseException)
        assert not isinstance(abandoned, BaseException)
        return MaintenanceResult(
            expired_reservations=expired.expired,
            released_coupon_reservations=released.released,
            abandoned_carts=abandoned.abandoned,
        )
