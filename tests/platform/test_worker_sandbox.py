"""The saga worker's sandbox imports each workflow module anew for every workflow run. Without a
bytecode cache (PYTHONDONTWRITEBYTECODE, as in the Dockerfile and often in CI) every such import
compiled the module's source: ~11 % of the saga worker's CPU in the benchmark. ``worker.py sagas``
writes the cache when it starts; these tests run the real sandbox on the real workflow classes."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from importlib.machinery import SourceFileLoader
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow

import workflows
from worker import cache_workflow_bytecode, workflow_runner
from workflows.checkout import CheckoutWorkflow
from workflows.payment import PaymentWorkflow

FOLDER = Path(workflows.__path__[0])


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Paths of workflow modules compiled from source while the test runs."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # as with PYTHONDONTWRITEBYTECODE=1
    seen: list[str] = []
    original = SourceFileLoader.source_to_code

    def spy(self: SourceFileLoader, data: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(str(path)).parent == FOLDER:
            seen.append(Path(str(path)).name)
        return original(self, data, path, *args, **kwargs)

    monkeypatch.setattr(SourceFileLoader, "source_to_code", spy)
    yield seen


def _cached(name: str) -> bool:
    return Path(str(importlib.util.cache_from_source(str(FOLDER / name)))).is_file()


def _run_in_sandbox() -> None:  # needs a running event loop, as in the worker
    runner = workflow_runner()
    for cls in (CheckoutWorkflow, PaymentWorkflow):
        runner.prepare_workflow(workflow._Definition.must_from_class(cls))


async def test_without_a_bytecode_cache_each_workflow_run_compiles_its_module(compiled: list[str]) -> None:
    shutil.rmtree(FOLDER / "__pycache__", ignore_errors=True)
    _run_in_sandbox()
    assert {"checkout.py", "payment.py"} <= set(compiled)


async def test_the_saga_worker_start_leaves_the_cache_the_sandbox_imports_from(compiled: list[str]) -> None:
    shutil.rmtree(FOLDER / "__pycache__", ignore_errors=True)
    cache_workflow_bytecode()
    assert _cached("checkout.py") and _cached("payment.py")
    compiled.clear()  # compileall compiles through the same loader method
    _run_in_sandbox()
    _run_in_sandbox()
    assert compiled == []
