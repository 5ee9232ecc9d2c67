"""Replay workflow histories against the current workflow code, to catch non-determinism before a
deploy: one workflow by id, every workflow a visibility query matches, or history files on disk."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer


@dataclass
class ReplayOutcome:
    workflow_id: str
    run_id: str | None
    ok: bool
    error: str | None = None


def replayer() -> Replayer:
    from worker import workflow_classes, workflow_runner

    return Replayer(
        workflows=workflow_classes(),
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )


async def histories_from_server(
    client: Client, *, workflow_id: str | None = None, query: str | None = None, limit: int = 1000
) -> AsyncIterator[WorkflowHistory]:
    if workflow_id:
        yield await client.get_workflow_handle(workflow_id).fetch_history()
        return
    count = 0
    async for execution in client.list_workflows(query or ""):
        if count >= limit:
            return
        count += 1
        yield await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()


def histories_from_files(paths: Sequence[Path]) -> list[WorkflowHistory]:
    found: list[WorkflowHistory] = []
    for path in paths:
        for file in sorted(path.rglob("*.json")) if path.is_dir() else [path]:
            data = json.loads(file.read_text())
            workflow_id = data.get("sagashop_workflow_id") or file.stem
            found.append(
                WorkflowHistory.from_json(workflow_id, data["history"] if "history" in data else data)
            )
    return found


async def replay_all(
    histories: AsyncIterator[WorkflowHistory] | Sequence[WorkflowHistory],
) -> list[ReplayOutcome]:
    """Replay each history; a non-determinism error is reported per workflow, not raised."""
    rep = replayer()
    outcomes: list[ReplayOutcome] = []

    async def one(history: WorkflowHistory) -> None:
        result = await rep.replay_workflow(history, raise_on_replay_failure=False)
        error = None
        if result.replay_failure is not None:
            error = f"{type(result.replay_failure).__name__}: {result.replay_failure}"
        outcomes.append(ReplayOutcome(history.workflow_id, _run_id(history), error is None, error))

    if isinstance(histories, Sequence):
        for history in histories:
            await one(history)
    else:
        async for history in histories:
            await one(history)
    return outcomes


def _run_id(history: WorkflowHistory) -> str | None:
    events = history.events
    if events and events[0].HasField("workflow_execution_started_event_attributes"):
        return events[0].workflow_execution_started_event_attributes.original_execution_run_id or None
    return None


async def save_history(client: Client, workflow_id: str, dest: Path, run_id: str | None = None) -> Path:
    """Write one workflow's history as a JSON fixture (the format `temporal workflow show -o json` uses)."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    payload = json.dumps(
        {"sagashop_workflow_id": workflow_id, "history": json.loads(history.to_json())}, indent=1
    )

    def write() -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(payload)

    await asyncio.to_thread(write)
    return dest
