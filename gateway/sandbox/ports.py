"""Free loopback ports and a "does it accept connections" probe."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port(exclude: set[int] | frozenset[int] = frozenset()) -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (the kernel picks it).

    Another process may take it before our server binds it; the launchers detect "address in use" and
    retry with a new port.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port not in exclude:
            return port


def accepts_connections(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    """True if a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
