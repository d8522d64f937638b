"""A TCP proxy on loopback that delays every byte by a fixed time in each direction (a WAN in a box).

Each direction of each connection has a reader thread that stamps what it reads with `now + delay` and a
sender thread that forwards it when that time comes, so the delay adds latency without limiting throughput
(bytes keep flowing while earlier ones wait).
"""

from __future__ import annotations

import collections
import socket
import threading
import time


class DelayProxy:
    """Listen on 127.0.0.1:<port>, forward to (host, port) with `delay_s` added each way."""

    def __init__(self, target: tuple[str, int], delay_s: float) -> None:
        self.target, self.delay_s = target, delay_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._closed = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, name="delayproxy-accept", daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._socks.append(s)
            self._direction(client, upstream)
            self._direction(upstream, client)

    def _direction(self, src: socket.socket, dst: socket.socket) -> None:
        queue: collections.deque[tuple[float, bytes]] = collections.deque()
        ready = threading.Condition()

        def read() -> None:
            while True:
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                with ready:
                    queue.append((time.monotonic() + self.delay_s, data))
                    ready.notify()
                if not data:
                    return

        def send() -> None:
            while True:
                with ready:
                    while not queue:
                        ready.wait()
                    due, data = queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    _shutdown(dst)
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    _shutdown(src)
                    return

        threading.Thread(target=read, name="delayproxy-read", daemon=True).start()
        threading.Thread(target=send, name="delayproxy-send", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        for s in self._socks:
            _shutdown(s)


def _shutdown(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
