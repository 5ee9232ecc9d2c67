"""`make up` explains what is missing instead of printing a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import ROOT, Settings
from devstack import postgres, temporal_cli
from devstack.errors import SetupError
from devstack.ports import require_free


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(SetupError, match=f"port {port} .*already in use") as err:
            require_free(port, "the API", "API_PORT")
        assert "API_PORT" in str(err.value)


def test_no_temporal_cli_and_no_go_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither `temporal` nor `go` on PATH
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no cached build either
    monkeypatch.setattr(temporal_cli.Path, "exists", lambda self: False)  # nor Go in its usual places
    with pytest.raises(SetupError) as err:
        temporal_cli.find_temporal_cli(Settings())
    text = str(err.value)
    assert (
        "Go is not available" in text and "go install github.com/temporalio/cli/cmd/temporal@v1.5.1" in text
    )


def test_temporal_cli_path_setting_must_be_executable(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="not an executable"):
        temporal_cli.find_temporal_cli(Settings(temporal_cli_path=tmp_path / "nope"))


def test_temporal_cli_on_path_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "temporal"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert temporal_cli.find_temporal_cli(Settings()) == fake


def test_postgres_binaries_missing_and_not_installable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "_bindir_candidates", lambda: [])
    with pytest.raises(SetupError, match="initdb, pg_ctl") as err:
        postgres.find_pg_bindir(install=False)
    assert "POSTGRES_ADMIN_URL" in str(err.value)


def test_up_with_a_busy_port_exits_cleanly(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = {
            **os.environ,
            "API_PORT": str(port),
            "DATA_DIR": str(tmp_path),
            "TEMPORAL_ADDRESS": "127.0.0.1:1",
            "TEMPORAL_UI_PORT": "2",
        }
        done = subprocess.run(
            [sys.executable, "-m", "devstack", "up"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"port {port} (for the API) is already in use" in done.stderr
    assert "Traceback" not in done.stderr
