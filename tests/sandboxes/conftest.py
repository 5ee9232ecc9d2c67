"""Fixtures that run the sandboxes as real subprocesses, and a webhook receiver to test against.

Each sandbox starts once per test session (``python -m sandboxes.<name>`` on a free port) and is
stopped at the end. Tests reach them only through the adapters (and plain HTTP for control calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.notification.mailer import Mailer
from services.payment.provider import PspSandboxProvider
from services.shipping.carrier import CarrierSandboxClient

ROOT = Path(__file__).resolve().parents[2]
PSP_SECRET = "test-psp-webhook-secret"
CARRIER_SECRET = "test-carrier-webhook-secret"
WEBHOOK_MAX_ATTEMPTS = 4
STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SandboxProcess:
    """One sandbox subprocess; ``start`` waits until its ``/healthz`` answers."""

    def __init__(self, module: str, args: list[str], health_url: str) -> None:
        self.module = module
        self.args = args
        self.health_url = health_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()

    def start(self) -> None:
        env = {
            **os.environ,
            "PSP_WEBHOOK_SECRET": PSP_SECRET,
            "CARRIER_WEBHOOK_SECRET": CARRIER_SECRET,
            "PYTHONUNBUFFERED": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.health_url, timeout=0.5).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"{self.module} did not answer {self.health_url} in {STARTUP_TIMEOUT_S} s:\n{self.output()}"
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-4000:]


def psp_process(port: int, *extra: str) -> SandboxProcess:
    args = [
        "--port",
        str(port),
        "--webhook-backoff-ms",
        "50",
        "--webhook-max-attempts",
        str(WEBHOOK_MAX_ATTEMPTS),
    ]
    return SandboxProcess("sandboxes.psp", [*args, *extra], f"http://127.0.0.1:{port}/healthz")


@pytest.fixture(scope="session")
def psp_url() -> Iterator[str]:
    port = free_port()
    sandbox = psp_process(port)
    sandbox.start()
    yield f"http://127.0.0.1:{port}"
    sandbox.stop()


@pytest.fixture(scope="session")
def carrier_url() -> Iterator[str]:
    port = free_port()
    args = [
        "--port",
        str(port),
        "--webhook-backoff-ms",
        "50",
        "--webhook-max-attempts",
        str(WEBHOOK_MAX_ATTEMPTS),
    ]
    sandbox = SandboxProcess("sandboxes.carrier", args, f"http://127.0.0.1:{port}/healthz")
    sandbox.start()
    yield f"http://127.0.0.1:{port}"
    sandbox.stop()


@dataclass(frozen=True)
class SmtpSink:
    smtp_port: int
    http_url: str


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    smtp_port, http_port = free_port(), free_port()
    args = ["--smtp-port", str(smtp_port), "--http-port", str(http_port)]
    sandbox = SandboxProcess("sandboxes.smtp_sink", args, f"http://127.0.0.1:{http_port}/healthz")
    sandbox.start()
    yield SmtpSink(smtp_port, f"http://127.0.0.1:{http_port}")
    sandbox.stop()


@pytest.fixture
def start_psp() -> Iterator[Callable[..., tuple[str, SandboxProcess]]]:
    """Start an extra PSP process with its own arguments (stopped after the test)."""
    started: list[SandboxProcess] = []

    def start(*extra: str) -> tuple[str, SandboxProcess]:
        port = free_port()
        sandbox = psp_process(port, *extra)
        started.append(sandbox)
        sandbox.start()
        return f"http://127.0.0.1:{port}", sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
async def psp(psp_url: str) -> AsyncIterator[PspSandboxProvider]:
    async with PspSandboxProvider(psp_url, timeout=5.0) as provider:
        await provider.clear_faults()
        yield provider
        await provider.clear_faults()


@pytest.fixture
async def carrier(carrier_url: str) -> AsyncIterator[CarrierSandboxClient]:
    async with CarrierSandboxClient(carrier_url, timeout=5.0) as client:
        await client.clear_faults()
        yield client
        await client.clear_faults()


@pytest.fixture
async def mailer(smtp_sink: SmtpSink) -> AsyncIterator[Mailer]:
    async with httpx.AsyncClient(base_url=smtp_sink.http_url) as http:
        (await http.delete("/_control/faults")).raise_for_status()
        yield Mailer("127.0.0.1", smtp_sink.smtp_port, sender="shop@sagashop.test", timeout=5.0)
        (await http.delete("/_control/faults")).raise_for_status()


# --------------------------------------------------------------------------------------------
# Webhook receiver


@dataclass(frozen=True)
class ReceivedWebhook:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A tiny HTTP server on a free port that records every POST and answers 200 (or 500 on demand)."""

    port: int = 0
    received: list[ReceivedWebhook] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_next(self, path: str, count: int) -> None:
        """Answer 500 to the next ``count`` requests to ``path``."""
        self.failures[path] = count

    def at(self, path: str) -> list[ReceivedWebhook]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, path: str, count: int, within_s: float = 10.0) -> list[ReceivedWebhook]:
        """Wait until ``path`` got at least ``count`` requests; return them (oldest first)."""
        deadline = asyncio.get_running_loop().time() + within_s
        while len(self.at(path)) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"{path}: got {len(self.at(path))} webhooks, expected {count}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return self.at(path)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1").split()
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode("latin-1").strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            path = request_line[1]
            self.received.append(ReceivedWebhook(path, headers, body))
            self._arrived.set()
            failing = self.failures.get(path, 0)
            if failing > 0:
                self.failures[path] = failing - 1
            status = "500 Internal Server Error" if failing > 0 else "200 OK"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture(scope="session")
async def webhooks() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()
