"""Engine floor: what Temporal itself costs here. One workflow runs K no-op activities one after
another (K = the number of activities a checkout runs), regular activities on their own task queue,
exactly as the checkout saga schedules its steps on the service task queues.

The worker runs in a subprocess by default (``python -m bench.engine_floor ...``): the saga's
workers are separate processes too, and a worker sharing the benchmark's event loop would add its
sandbox CPU and GIL contention to the latencies the load generator measures. ``in_process=True``
(``--floor-worker inprocess``) hosts it in the benchmark process instead.

Also here: ``schedule_to_start_latencies``, shared with the saga mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from bench.harness import Mode, ModeContext, WorkflowIdLog, pid_source
    from bench.stats import latency_stats

# Activities of one benchmark checkout: lock cart, price and reserve, promotions, quote, create order,
# authorize (in the payment child), confirm, email, commit stock, convert cart. The address and card
# come with the input (read by the API); no promotion applies to the demo catalog, so none is recorded.
DEFAULT_ACTIVITIES = 10
WORKER_READY_LINE = "engine-floor worker ready"


class FloorInput(BaseModel):
    activities: int = DEFAULT_ACTIVITIES
    activity_task_queue: str


class FloorResult(BaseModel):
    activities: int


class NoopInput(BaseModel):
    step: int
    idempotency_key: str


class NoopResult(BaseModel):
    step: int


@activity.defn(name="bench.noop")
async def noop(inp: NoopInput) -> NoopResult:
    return NoopResult(step=inp.step)


@workflow.defn(name="bench-engine-floor")
class EngineFloorWorkflow:
    @workflow.run
    async def run(self, inp: FloorInput) -> FloorResult:
        done = 0
        for step in range(inp.activities):
            result = await workflow.execute_activity(
                noop,
                NoopInput(step=step, idempotency_key=f"{workflow.info().workflow_id}:{step}"),
                task_queue=inp.activity_task_queue,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5),
            )
            done += 1 if result.step == step else 0
        return FloorResult(activities=done)


# --------------------------------------------------------------------------------------------------
# Worker


@dataclass(frozen=True)
class FloorWorkerConfig:
    """Worker settings of the floor; recorded in the report. The defaults are worker.py's
    (``--max-concurrent 100`` for workflow tasks and activities, the SDK's 5 pollers each)."""

    max_concurrent_workflow_tasks: int = 100
    max_concurrent_activities: int = 100
    workflow_task_pollers: int = 5
    activity_task_pollers: int = 5
    max_cached_workflows: int = 1000

    def argv(self) -> list[str]:
        return [
            "--max-concurrent-workflow-tasks",
            str(self.max_concurrent_workflow_tasks),
            "--max-concurrent-activities",
            str(self.max_concurrent_activities),
            "--workflow-task-pollers",
            str(self.workflow_task_pollers),
            "--activity-task-pollers",
            str(self.activity_task_pollers),
            "--max-cached-workflows",
            str(self.max_cached_workflows),
        ]


def build_workers(client: Any, cfg: FloorWorkerConfig, workflow_queue: str, activity_queue: str) -> list[Any]:
    """A workflow worker (the saga worker's sandbox runner) and an activity worker, one queue each."""
    from temporalio.worker import Worker

    from worker import workflow_runner

    return [
        Worker(
            client,
            task_queue=workflow_queue,
            workflows=[EngineFloorWorkflow],
            workflow_runner=workflow_runner(),
            max_concurrent_workflow_tasks=cfg.max_concurrent_workflow_tasks,
            max_concurrent_workflow_task_polls=cfg.workflow_task_pollers,
            max_cached_workflows=cfg.max_cached_workflows,
        ),
        Worker(
            client,
            task_queue=activity_queue,
            activities=[noop],
            max_concurrent_activities=cfg.max_concurrent_activities,
            max_concurrent_activity_task_polls=cfg.activity_task_pollers,
            graceful_shutdown_timeout=timedelta(seconds=5),
        ),
    ]


@contextlib.asynccontextmanager
async def _in_process_worker(
    client: Any, cfg: FloorWorkerConfig, workflow_queue: str, activity_queue: str
) -> AsyncIterator[list[int]]:
    wf_worker, act_worker = build_workers(client, cfg, workflow_queue, activity_queue)
    async with wf_worker, act_worker:
        yield []  # no extra processes: the benchmark process is accounted anyway


@contextlib.asynccontextmanager
async def _subprocess_worker(
    ctx: ModeContext, cfg: FloorWorkerConfig, workflow_queue: str, activity_queue: str
) -> AsyncIterator[list[int]]:
    from core.settings import ROOT

    assert ctx.temporal is not None
    log_path = ctx.work_dir / "engine-floor-worker.log"
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.engine_floor",
            "--address",
            ctx.temporal.address,
            "--namespace",
            ctx.temporal.namespace,
            "--workflow-task-queue",
            workflow_queue,
            "--activity-task-queue",
            activity_queue,
            *cfg.argv(),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    try:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        except TimeoutError:
            line = b""
        if WORKER_READY_LINE not in line.decode(errors="replace"):
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the engine-floor worker did not start (log {log_path}):\n{tail}")
        yield [proc.pid]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def add_arguments(group: Any) -> None:
    """This mode's options on the `python -m bench` command line (an argparse group)."""
    d = FloorWorkerConfig()
    group.add_argument(
        "--floor-activities", type=int, default=DEFAULT_ACTIVITIES, help="no-op activities per workflow"
    )
    group.add_argument("--floor-worker", choices=["subprocess", "inprocess"], default="subprocess")
    group.add_argument(
        "--floor-max-concurrent-workflow-tasks", type=int, default=d.max_concurrent_workflow_tasks
    )
    group.add_argument("--floor-max-concurrent-activities", type=int, default=d.max_concurrent_activities)
    group.add_argument("--floor-workflow-task-pollers", type=int, default=d.workflow_task_pollers)
    group.add_argument("--floor-activity-task-pollers", type=int, default=d.activity_task_pollers)
    group.add_argument("--floor-max-cached-workflows", type=int, default=d.max_cached_workflows)


def floor_options(options: Any) -> tuple[int, FloorWorkerConfig, bool]:
    """(activities, worker settings, in_process) from the parsed command line; defaults if absent."""
    base = FloorWorkerConfig()
    cfg = FloorWorkerConfig(
        **{name: getattr(options, f"floor_{name}", default) for name, default in asdict(base).items()}
    )
    return (
        int(getattr(options, "floor_activities", DEFAULT_ACTIVITIES)),
        cfg,
        getattr(options, "floor_worker", "subprocess") == "inprocess",
    )


@contextlib.asynccontextmanager
async def engine_floor_mode(ctx: ModeContext) -> AsyncIterator[Mode]:
    """Mode factory (see bench.harness.ModeFactory): a floor worker, and one workflow per operation."""
    if ctx.temporal is None:
        raise RuntimeError("the engine-floor mode needs a Temporal server")
    client = ctx.temporal.client
    activities, cfg, in_process = floor_options(ctx.options)
    op_timeout_s = float(getattr(ctx.options, "op_timeout", 60.0))
    workflow_queue = f"bench-floor-{ctx.run_id}"
    activity_queue = f"{workflow_queue}-activities"
    worker = (
        _in_process_worker(client, cfg, workflow_queue, activity_queue)
        if in_process
        else _subprocess_worker(ctx, cfg, workflow_queue, activity_queue)
    )
    async with worker as worker_pids:
        ids = WorkflowIdLog()
        sequence = itertools.count()
        inp = FloorInput(activities=activities, activity_task_queue=activity_queue)

        async def operation(user: int) -> None:
            workflow_id = f"{workflow_queue}-u{user}-{next(sequence)}"
            result = await client.execute_workflow(
                EngineFloorWorkflow.run,
                inp,
                id=workflow_id,
                task_queue=workflow_queue,
                execution_timeout=timedelta(seconds=op_timeout_s),
                result_type=FloorResult,
            )
            if result.activities != activities:
                raise RuntimeError(f"{workflow_id} ran {result.activities} of {activities} activities")
            ids.add(workflow_id)

        sources = [pid_source("floor-worker", worker_pids)] if worker_pids else []
        if ctx.temporal.processes is not None:
            sources.append(ctx.temporal.processes)
        yield Mode(
            operation=operation,
            cpu_sources=sources,
            workflow_ids=ids,
            config={
                "activities_per_workflow": activities,
                "activity_kind": "regular (not local), own task queue",
                "worker": "in the benchmark process" if in_process else "one subprocess",
                "sandbox": "worker.workflow_runner() (the saga worker's passthrough list)",
                **asdict(cfg),
            },
        )


# --------------------------------------------------------------------------------------------------
# Schedule-to-start latency from workflow histories


async def schedule_to_start_latencies(
    client: Any, workflow_ids: Sequence[str], *, concurrency: int = 8
) -> dict[str, Any]:
    """Workflow-task and activity schedule-to-start latency of finished workflows, from their
    histories: WorkflowTaskStarted - WorkflowTaskScheduled and ActivityTaskStarted -
    ActivityTaskScheduled (event times written by the server). For an activity that was retried
    the figure includes the retry backoff (the started event is that of the last attempt).
    Also the time the workers spent on each task (WorkflowTaskStarted -> Completed, ActivityTaskStarted
    -> Completed: on a saturated machine these grow, not only the waits), and workflow-task failures
    and timeouts (deadlocks show up there) with their messages."""
    from temporalio.api.enums.v1 import EventType

    wft_scheduled = EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
    wft_started = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    act_scheduled = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    act_started = EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    wft_completed = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    act_completed = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    wft_failed = EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    wft_timed_out = EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT

    workflow_task: list[float] = []
    activity_task: list[float] = []
    workflow_task_run: list[float] = []
    activity_run: list[float] = []
    failures: Counter[str] = Counter()
    unreadable: Counter[str] = Counter()
    read = 0
    gate = asyncio.Semaphore(concurrency)

    async def one(workflow_id: str) -> None:
        nonlocal read
        async with gate:
            try:
                history = await client.get_workflow_handle(workflow_id).fetch_history()
            except Exception as exc:
                unreadable[type(exc).__name__] += 1
                return
        read += 1
        at_event: dict[int, int] = {}  # event id -> time (ns) of scheduled and started events
        for event in history.events:
            at = event.event_time.ToNanoseconds()
            kind = event.event_type
            if kind in (wft_scheduled, act_scheduled):
                at_event[event.event_id] = at
            elif kind == wft_started:
                at_event[event.event_id] = at
                origin = at_event.get(event.workflow_task_started_event_attributes.scheduled_event_id)
                if origin is not None:
                    workflow_task.append((at - origin) / 1e9)
            elif kind == act_started:
                at_event[event.event_id] = at
                origin = at_event.get(event.activity_task_started_event_attributes.scheduled_event_id)
                if origin is not None:
                    activity_task.append((at - origin) / 1e9)
            elif kind == wft_completed:
                origin = at_event.get(event.workflow_task_completed_event_attributes.started_event_id)
                if origin is not None:
                    workflow_task_run.append((at - origin) / 1e9)
            elif kind == act_completed:
                origin = at_event.get(event.activity_task_completed_event_attributes.started_event_id)
                if origin is not None:
                    activity_run.append((at - origin) / 1e9)
            elif kind == wft_failed:
                message = event.workflow_task_failed_event_attributes.failure.message
                failures[f"failed: {message[:160]}"] += 1
            elif kind == wft_timed_out:
                failures["timed out"] += 1

    await asyncio.gather(*(one(wid) for wid in workflow_ids))
    return {
        "workflows_sampled": read,
        "histories_unreadable": dict(unreadable),
        "workflow_task": latency_stats(workflow_task).to_dict(),
        "activity_task": latency_stats(activity_task).to_dict(),
        "workflow_task_processing": latency_stats(workflow_task_run).to_dict(),
        "activity_processing": latency_stats(activity_run).to_dict(),
        "workflow_task_failures": {"total": sum(failures.values()), "by_reason": dict(failures)},
    }


# --------------------------------------------------------------------------------------------------
# Subprocess entry point


async def _serve(args: argparse.Namespace) -> None:
    from core.settings import get_settings
    from core.temporal import connect

    settings = get_settings().model_copy(
        update={"temporal_address": args.address, "temporal_namespace": args.namespace}
    )
    client = await connect(settings)
    cfg = FloorWorkerConfig(
        max_concurrent_workflow_tasks=args.max_concurrent_workflow_tasks,
        max_concurrent_activities=args.max_concurrent_activities,
        workflow_task_pollers=args.workflow_task_pollers,
        activity_task_pollers=args.activity_task_pollers,
        max_cached_workflows=args.max_cached_workflows,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    wf_worker, act_worker = build_workers(client, cfg, args.workflow_task_queue, args.activity_task_queue)
    async with wf_worker, act_worker:
        print(WORKER_READY_LINE, flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    defaults = FloorWorkerConfig()
    parser = argparse.ArgumentParser(description="engine-floor worker (started by `python -m bench`)")
    parser.add_argument("--address", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--workflow-task-queue", required=True)
    parser.add_argument("--activity-task-queue", required=True)
    parser.add_argument(
        "--max-concurrent-workflow-tasks", type=int, default=defaults.max_concurrent_workflow_tasks
    )
    parser.add_argument("--max-concurrent-activities", type=int, default=defaults.max_concurrent_activities)
    parser.add_argument("--workflow-task-pollers", type=int, default=defaults.workflow_task_pollers)
    parser.add_argument("--activity-task-pollers", type=int, default=defaults.activity_task_pollers)
    parser.add_argument("--max-cached-workflows", type=int, default=defaults.max_cached_workflows)
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter teardown under live Temporal bridge threads (sdk-python#300)
