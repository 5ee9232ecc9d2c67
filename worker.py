"""Run one Temporal worker process.

    python worker.py <service>   # hosts activities/<service>.py on task queue <service>; owns its database
    python worker.py sagas       # hosts every workflow on task queue "sagas"; no database connection

Run several processes of the same kind to scale a task queue: Temporal spreads the tasks among them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from core.db import create_engine, session_factory
from core.registry import SAGAS_TASK_QUEUE, SERVICE_NAMES, service
from core.settings import Settings, get_settings
from core.temporal import connect

log = logging.getLogger("worker")


def workflow_classes() -> Sequence[type]:
    from workflows.checkout import CheckoutWorkflow
    from workflows.maintenance import MaintenanceWorkflow
    from workflows.partition_maintenance import PartitionMaintenanceWorkflow
    from workflows.password_reset import PasswordResetWorkflow
    from workflows.payment import PaymentWorkflow
    from workflows.registration import RegistrationWorkflow
    from workflows.returns import ReturnWorkflow
    from workflows.shipping import ShippingWorkflow
    from workflows.system_check import SystemCheckWorkflow

    return [
        SystemCheckWorkflow,
        PartitionMaintenanceWorkflow,
        MaintenanceWorkflow,
        CheckoutWorkflow,
        PaymentWorkflow,
        RegistrationWorkflow,
        PasswordResetWorkflow,
        ShippingWorkflow,
        ReturnWorkflow,
    ]


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Schedules the saga worker owns; created once (and run right away), left alone when present."""
    from workflows.partition_maintenance import PartitionMaintenanceInput, PartitionMaintenanceWorkflow

    try:
        await client.create_schedule(
            "partition-maintenance",
            Schedule(
                action=ScheduleActionStartWorkflow(
                    PartitionMaintenanceWorkflow.run,
                    PartitionMaintenanceInput(),
                    id="partition-maintenance-run",
                    task_queue=SAGAS_TASK_QUEUE,
                    execution_timeout=timedelta(hours=1),
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(days=1))]),
            ),
            trigger_immediately=True,
        )
    except ScheduleAlreadyRunningError:
        pass

    from workflows.maintenance import MaintenanceInput, MaintenanceWorkflow

    interval = timedelta(seconds=settings.maintenance_interval_s)

    try:  # the expiry sweeps (reservations, coupon reservations, carts); first run one interval from now
        await client.create_schedule(
            "maintenance",
            Schedule(
                action=ScheduleActionStartWorkflow(
                    MaintenanceWorkflow.run,
                    MaintenanceInput(),
                    id="maintenance-run",
                    task_queue=SAGAS_TASK_QUEUE,
                    execution_timeout=interval,
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval)]),
            ),
        )
    except ScheduleAlreadyRunningError:
        pass


def cache_workflow_bytecode() -> None:
    """The sandbox imports a workflow's module anew for every workflow run. Without a bytecode cache
    (PYTHONDONTWRITEBYTECODE is common in containers and CI) that import compiles the source each
    time: ~11 % of the saga worker's CPU in the benchmark. Write the cache once at start; where the
    code is read-only the image builds it (Dockerfile)."""
    import compileall

    import workflows

    for folder in workflows.__path__:
        compileall.compile_dir(folder, quiet=2, workers=1)


def workflow_runner() -> SandboxedWorkflowRunner:
    # Model and contract modules are deterministic and heavy to re-import per workflow run:
    # pass them through the sandbox instead of reloading them for each workflow.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "pydantic", "pydantic_core", "sqlalchemy", "sqlmodel", "core", "activities", "services"
        ).with_passthrough_modules("email_validator", "idna")  # imported lazily by EmailStr fields
    )


async def run(target: str, settings: Settings, *, max_concurrent: int) -> None:
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    if target == "sagas":
        cache_workflow_bytecode()
        await ensure_schedules(client, settings)
        worker = Worker(
            client,
            task_queue=SAGAS_TASK_QUEUE,
            workflows=workflow_classes(),
            workflow_runner=workflow_runner(),
            max_concurrent_workflow_tasks=max_concurrent,
        )
        engine = None
    else:
        info = service(target)
        engine = create_engine(settings, info.name)
        from activities.system import make_ping

        module = importlib.import_module(f"activities.{info.package}")
        acts: list[Callable[..., Any]] = [
            make_ping(info.name, engine),
            *module.build(session_factory(engine), settings),
        ]
        worker = Worker(
            client,
            task_queue=info.task_queue,
            activities=acts,
            max_concurrent_activities=max_concurrent,
            graceful_shutdown_timeout=timedelta(seconds=10),
        )
    log.info("worker %s polling task queue %r on %s", target, worker.task_queue, settings.temporal_address)
    async with worker:
        await stop.wait()
    if engine is not None:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", choices=[*SERVICE_NAMES, "sagas"], help="a service name, or 'sagas'")
    parser.add_argument("--max-concurrent", type=int, default=100, help="activity / workflow-task slots")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.target} %(levelname)s %(message)s")
    settings = get_settings()
    try:
        asyncio.run(run(args.target, settings, max_concurrent=args.max_concurrent))
    except RuntimeError as exc:  # e.g. Temporal unreachable at start
        sys.exit(f"worker {args.target}: {exc}")


if __name__ == "__main__":
    main()
