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
