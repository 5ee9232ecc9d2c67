"""The architecture, checked: workflows only orchestrate; each service touches only its own database;
the code is ruff- and mypy-clean."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from core.registry import SERVICES
from core.settings import ROOT


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "workflows").glob("*.py")), ids=lambda p: p.name)
def test_workflows_do_no_io_and_never_import_services(path: Path) -> None:
    forbidden = ("services", "sqlalchemy", "sqlmodel", "asyncpg", "httpx", "aiosmtplib", "requests", "socket")
    bad = {m for m in _imports(path) if m.split(".")[0] in forbidden}
    assert not bad, f"{path.name} imports {bad}: workflows orchestrate, activities do the I/O"


def _passed_through(tree: ast.Module) -> set[str]:
    """Modules imported inside ``with workflow.unsafe.imports_passed_through():`` blocks."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any("imports_passed_through" in ast.unparse(i) for i in node.items):
            found |= {n.module for n in ast.walk(node) if isinstance(n, ast.ImportFrom) and n.module}
    return found


@pytest.mark.parametrize("name", ["checkout", "payment"])
def test_hot_sagas_take_their_models_through_the_sandbox(name: str) -> None:
    """The sandbox re-imports a workflow's module for every run; pydantic models built there would be
    rebuilt each time (README, Performance). The checkout and payment sagas keep theirs in
    workflows/messages.py, imported once per worker through the passthrough."""
    tree = ast.parse((ROOT / "workflows" / f"{name}.py").read_text())
    models = [
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b) == "BaseModel" for b in node.bases)
    ]
    assert not models, f"workflows/{name}.py defines {models}: move them to workflows/messages.py"
    assert "workflows.messages" in _passed_through(tree)
    # models only: no workflow code that the sandbox would then no longer check
    assert not {m for m in _imports(ROOT / "workflows" / "messages.py") if m.startswith("temporalio")}


@pytest.mark.parametrize("info", SERVICES, ids=[s.name for s in SERVICES])
def test_a_service_never_imports_another_services_code(info: object) -> None:
    from core.registry import ServiceInfo

    assert isinstance(info, ServiceInfo)
    others = {s.package for s in SERVICES} - {info.package}
    for path in (ROOT / "services" / info.package).rglob("*.py"):
        bad = {m for m in _imports(path) if m.startswith("services.") and m.split(".")[1] in others}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}: cross-service data comes through workflows"


def test_ruff_is_clean() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:]


def test_mypy_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
