"""CPython-only helpers for tests that use a real Mosquitto: start one on a free loopback port in a
temporary folder (stopped by PID), and a paho-based gateway stand-in that acks like protocol section 5."""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc = None

    def start(self) -> "Mosquitto":
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.folder / "mosquitto.conf"
        (self.folder / "data").mkdir(exist_ok=True)
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                        f"persistence_location {self.folder / 'data'}/\nmax_queued_messages 0\nuser root\n")
        self.log = open(self.folder / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited: " + (self.folder / "mosquitto.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


class PahoGateway:
    """Subscribes to every reading and status; keeps one row per identity; acks the contiguous watermark
    with ``t``. A stand-in for the real gateway in port tests (the e2e test uses the real one)."""

    def __init__(self, port: int, prefix: str = "iot", t_ms: int = 1700000000500) -> None:
        self.rows = {}
        self.arrivals = []
        self.statuses = []
        self.held = {}
        self.lock = threading.Lock()
        self.t_ms = t_ms
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-gw-{free_port()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(prefix + "/+/+/reading", 1)
        self.client.subscribe(prefix + "/+/+/status", 1)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):
        payload = msg.payload.decode()
        if msg.topic.endswith("/status"):
            with self.lock:
                self.statuses.append((msg.topic, json.loads(payload), msg.retain))
            return
        r = json.loads(payload)
        key = (r["dev"], r["node"], r["boot"])
        with self.lock:
            self.arrivals.append((time.time(), r))  # wall clock, comparable with the readings' ts
            self.rows.setdefault(key + (r["seq"],), r)
            held = self.held.setdefault(key, set())
            held.add(r["seq"])
            upto = -1
            while upto + 1 in held:
                upto += 1
        if upto >= 0:
            dev, node, boot = key
            ack = f'{{"v":1,"dev":"{dev}","node":"{node}","boot":{boot},"upto":{upto},"t":{self.t_ms}}}'
            client.publish(msg.topic[: -len("reading")] + "ack", ack, 1)

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self):
                    return
            time.sleep(0.05)
        raise AssertionError("timed out waiting for " + what)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
