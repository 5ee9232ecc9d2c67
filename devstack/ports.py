from __future__ import annotations

import socket

from devstack.errors import SetupError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def require_free(port: int, what: str, setting: str) -> None:
    if port_in_use(port):
        raise SetupError(
            f"port {port} (for {what}) is already in use",
            f"stop whatever listens there (`ss -ltnp 'sport = :{port}'`) or choose another port with {setting}=...",
        )
