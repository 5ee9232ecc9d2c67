"""Invariant 7: stored workflow histories replay against the current workflow code. Also the replay
and save-history commands engineers use, end to end against the test Temporal server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from core.registry import SAGAS_TASK_QUEUE
from core.settings import ROOT
from devstack.replay import histories_from_files, replay_all
from tests.conftest import Stack, record_history
from workflows.system_check import SystemCheckInput, SystemCheckResult, SystemCheckWorkflow

HISTORIES = ROOT / "tests" / "histories"


def _stored() -> list[Path]:
    return sorted(HISTORIES.rglob("*.json"))


@pytest.mark.parametrize("path", _stored(), ids=lambda p: str(p.relative_to(HISTORIES)))
async def test_stored_history_replays_on_current_code(path: Path) -> None:
    outcomes = await replay_all(histories_from_files([path]))
    assert [o.error for o in outcomes] == [None]


def test_every_saga_has_stored_histories() -> None:
    kinds = {p.parent.name for p in _stored()}
    assert {
        "system_check",
        "checkout",
        "payment",
        "maintenance",
        "partition_maintenance",
        "registration",
        "password_reset",
        "shipping",
        "return",
    } <= kinds


async def _run_system_check(stack: Stack) -> str:
    workflow_id = f"system-check-replay-{uuid.uuid4()}"
    result = await stack.client.execute_workflow(
        SystemCheckWorkflow.run,
        SystemCheckInput(timeout_ms=3000),
        id=workflow_id,
        task_queue=SAGAS_TASK_QUEUE,
        execution_timeout=timedelta(seconds=20),
    )
    assert isinstance(result, SystemCheckResult)
    await record_history(stack.client, workflow_id, "system_check", "all_services")
    return workflow_id


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    from devstack.stack import settings_env

    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        cwd=ROOT,
        env={**os.environ, **settings_env(stack.settings)},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_save_history_then_replay_by_id_query_and_file(stack: Stack, tmp_path: Path) -> None:
    workflow_id = await _run_system_check(stack)
    dest = tmp_path / "system_check.json"
    saved = await asyncio.to_thread(_cli, stack, "save-history", workflow_id, str(dest))
    assert saved.returncode == 0, saved.stderr
    by_file = await asyncio.to_thread(_cli, stack, "replay", "--file", str(dest))
    assert by_file.returncode == 0 and "1 replayed, 0 non-deterministic" in by_file.stdout, (
        by_file.stdout + by_file.stderr
    )
    by_id = await asyncio.to_thread(_cli, stack, "replay", "--workflow-id", workflow_id)
    assert by_id.returncode == 0, by_id.stdout + by_id.stderr
    by_query = await asyncio.to_thread(_cli, stack, "replay", "--query", f"WorkflowId = '{workflow_id}'")
    assert by_query.returncode == 0 and "1 replayed" in by_query.stdout, by_query.stdout + by_query.stderr


@workflow.defn(name="system-check")
class _ChangedSystemCheck:
    """The same workflow type with a changed command order: a deploy that would break running workflows."""

    @workflow.run
    async def run(self, inp: SystemCheckInput) -> SystemCheckResult:
        await workflow.sleep(1)  # a timer where the history has activities
        return SystemCheckResult(ok=True, services=[])


async def test_non_determinism_is_reported_clearly(stack: Stack) -> None:
    workflow_id = await _run_system_check(stack)
    history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
    replayer = Replayer(
        workflows=[_ChangedSystemCheck],
        data_converter=pydantic_data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert (
        "nondeterminism" in str(result.replay_failure).lower()
        or "Nondeterminism" in type(result.replay_failure).__name__
    )
