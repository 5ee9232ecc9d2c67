"""``system-check``: pings every service task queue at once; behind ``GET /readyz``."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.system import ping_activity_name
    from core.health import ServiceHealth
    from core.registry import SERVICE_NAMES


class SystemCheckInput(BaseModel):
    timeout_ms: int = 3000


class SystemCheckResult(BaseModel):
    ok: bool
    services: list[ServiceHealth]


@workflow.defn(name="system-check")
class SystemCheckWorkflow:
    @workflow.run
    async def run(self, inp: SystemCheckInput) -> SystemCheckResult:
        results = await asyncio.gather(*(self._ping(name, inp.timeout_ms) for name in SERVICE_NAMES))
        return SystemCheckResult(ok=all(r.ok for r in results), services=list(results))

    async def _ping(self, service_name: str, timeout_ms: int) -> ServiceHealth:
        try:
            return await workflow.execute_activity(
                ping_activity_name(service_name),
                task_queue=service_name,
                # schedule-to-close bounds the wait when no worker polls the queue
                schedule_to_close_timeout=timedelta(milliseconds=timeout_ms),
                retry_policy=RetryPolicy(maximum_attempts=1),
                result_type=ServiceHealth,
                summary=f"ping {service_name}",
            )
        except Exception as exc:  # an activity failure or timeout is this service's failing state
            cause = getattr(exc, "cause", None)
            reason = str(cause or exc)
            if "timeout" in type(cause).__name__.lower() or "Timeout" in reason:
                reason = f"no answer from a '{service_name}' worker within {timeout_ms} ms"
            return ServiceHealth(service=service_name, ok=False, error=reason)
