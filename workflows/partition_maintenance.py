"""``partition-maintenance``: creates next months' partitions of the time-partitioned tables before
rows need them (security_audit_logs in auth_db, order_status_history in order_db, notifications in
notification_db), and lets each service drop the months past its retention setting
(AUDIT_LOG_RETENTION_MONTHS, NOTIFICATION_RETENTION_MONTHS; order history is kept with its orders).
Runs daily from a Temporal schedule; each step is idempotent (CREATE IF NOT EXISTS, drops of what
is there)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

# (task queue, activity) for each service owning a time-partitioned table
PARTITIONED = (
    ("auth", "auth.ensure_partitions"),
    ("order", "order.ensure_partitions"),
    ("notification", "notification.ensure_partitions"),
)


class PartitionMaintenanceInput(BaseModel):
    months_ahead: int = 3


class PartitionsCreated(BaseModel):
    created: list[str] = []
    dropped: list[str] = []


class PartitionMaintenanceResult(BaseModel):
    created: dict[str, list[str]]
    dropped: dict[str, list[str]] = {}


@workflow.defn(name="partition-maintenance")
class PartitionMaintenanceWorkflow:
    @workflow.run
    async def run(self, inp: PartitionMaintenanceInput) -> PartitionMaintenanceResult:
        results = await asyncio.gather(
            *(
                workflow.execute_activity(
                    activity,
                    {"months_ahead": inp.months_ahead},
                    task_queue=queue,
                    start_to_close_timeout=timedelta(minutes=1),
                    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
                    result_type=PartitionsCreated,
                    summary=f"{queue}: partitions for the next {inp.months_ahead} months",
                )
                for queue, activity in PARTITIONED
            )
        )
        return PartitionMaintenanceResult(
            created={q: r.created for (q, _), r in zip(PARTITIONED, results, strict=True)},
            dropped={q: r.dropped for (q, _), r in zip(PARTITIONED, results, strict=True)},
        )
