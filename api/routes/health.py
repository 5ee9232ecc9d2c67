"""``/healthz`` (the process is up) and ``/readyz`` (every service, its database and Temporal)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from fastapi import APIRouter, Response
from pydantic import BaseModel
from temporalio.client import WorkflowFailureError

from api.deps import LazyTemporalDep, SettingsDep
from api.temporal_client import TemporalUnavailable
from core.health import ServiceHealth
from core.registry import SAGAS_TASK_QUEUE, SERVICE_NAMES
from workflows.system_check import SystemCheckInput, SystemCheckResult, SystemCheckWorkflow

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str = "ok"


class ComponentState(BaseModel):
    ok: bool
    error: str | None = None


class Readiness(BaseModel):
    ok: bool
    temporal: ComponentState
    sagas_worker: ComponentState
    services: list[ServiceHealth]


@router.get("/healthz", response_model=Health, summary="The API process is up")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Every service database, every worker and Temporal are reachable",
    responses={503: {"model": Readiness, "description": "at least one component is failing"}},
)
async def readyz(response: Response, settings: SettingsDep, temporal: LazyTemporalDep) -> Readiness:
    budget = settings.readyz_timeout_s
    unknown = [ServiceHealth(service=name, ok=False, error="not checked") for name in SERVICE_NAMES]
    try:
        client = await temporal.get(timeout_s=budget / 2)
        handle = await client.start_workflow(
            SystemCheckWorkflow.run,
            SystemCheckInput(timeout_ms=int(budget * 1000 * 0.6)),
            id=f"system-check-{uuid.uuid4()}",
            task_queue=SAGAS_TASK_QUEUE,
            execution_timeout=timedelta(seconds=budget),
        )
    except TemporalUnavailable as exc:
        response.status_code = 503
        return Readiness(
            ok=False,
            temporal=ComponentState(ok=False, error=str(exc)),
            sagas_worker=ComponentState(ok=False, error="not checked"),
            services=unknown,
        )
    try:
        async with asyncio.timeout(budget):
            result: SystemCheckResult = await handle.result()
    except (TimeoutError, WorkflowFailureError):
        response.status_code = 503
        return Readiness(
            ok=False,
            temporal=ComponentState(ok=True),
            sagas_worker=ComponentState(
                ok=False, error=f"no 'sagas' worker ran the check within {budget:g} s"
            ),
            services=unknown,
        )
    if not result.ok:
        response.status_code = 503
    return Readiness(
        ok=result.ok,
        temporal=ComponentState(ok=True),
        sagas_worker=ComponentState(ok=True),
        services=result.services,
    )
