"""The collector resend timer of shared/protocol.md section 10 (the simulator's `ResendTimer`), and the
simulator's sending, which the resend benchmark relies on to publish every reading once."""

from __future__ import annotations

import json
import random
import signal
import threading
import time

from gateway.ingest.mqtt import MqttIngest
from gateway.ingest.session import MqttSession
from gateway.mqttconn import BrokerSettings, connect_blocking, make_client
from gateway.protocol import Ack
from gateway.sandbox.launch import wait_for
from gateway.sandbox.mosquitto import start_standalone, stock_config
from gateway.sandbox.ports import free_port
from gateway.sandbox.process import send_signal
from gateway.simulator import ResendTimer, SimOptions, Simulator
from gateway.spool import Spool, SpoolWriter

W = 10


def pending(*seqs: int) -> dict[int, list]:
    return {s: [b"", 0.0] for s in seqs}


def test_progress_keeps_a_slow_gateway_from_triggering_resends():
    t = ResendTimer(5.0, 60.0, random.Random(1))
    p = pending(*range(100))
    assert t.check(0.0, p, False, W) == 0  # armed
    for step in range(1, 50):  # an ack every 4 s: never 5 s without progress
        now = step * 4.0
        assert t.progress(now, step, pending(*range(step + 1, 100))) == 0
        assert t.check(now + 0.1, p, False, W) == 0


def test_expiry_resends_one_window_and_backs_off_with_jitter_up_to_the_cap():
    t = ResendTimer(5.0, 60.0, random.Random(2))
    p = pending(*range(1000))
    t.check(0.0, p, False, W)
    now, fired, gaps = 0.0, [], []
    while now < 400:
        now += 0.1
        n = t.check(now, p, False, W)
        if n:
            fired.append(now)
            assert n == W
    gaps = [b - a for a, b in zip(fired, fired[1:], strict=False)]
    assert len(fired) <= 12  # 400 s without progress: a handful of windows, not a storm
    assert all(g <= 60.1 for g in gaps) and max(gaps) > 30  # doubling, capped at 60 s
    unjittered = [min(60, 5 * 2 ** (i + 1)) for i in range(len(gaps))]
    assert any(abs(a - b) > 0.5 for a, b in zip(gaps, unjittered, strict=True))  # jitter


def test_recovery_grows_the_window_while_losses_continue_and_ends_when_the_gateway_is_ahead():
    t = ResendTimer(5.0, 60.0, random.Random(3))
    p = pending(*range(500))
    assert t.check(0.0, p, True, W) == W  # after a reconnect: one window at once
    t.window_top = 9
    p = pending(*range(10, 500))
    assert t.progress(1.0, 9, p) == 0  # acked exactly to the window's top...
    t.duplicate(9)  # ...and repeated (our duplicates answered): the records after it were lost
    assert t.check(1.0 + 2.4, p, False, W) == 0  # no resend before the (jittered) timeout
    assert t.check(1.0 + 5.1, p, False, W) == 2 * W  # silence: a window twice as large, without backing off
    assert t.timeout == 5.0
    t.window_top = 29
    t.progress(7.0, 29, pending(*range(30, 500)))
    t.duplicate(29)
    assert t.check(12.1, pending(*range(30, 500)), False, W) == 4 * W  # slow start
    t.window_top = 69
    t.progress(13.0, 80, pending(*range(81, 500)))  # beyond the window: the gateway has the originals
    assert t.recover_upto == -1 and t.scale == 1
    assert t.check(18.1, pending(*range(81, 500)), False, W) == W  # a later stall: back to one window
    t.window_top = 180
    t.progress(19.0, 180, pending(*range(181, 500)))  # acked to the top but never repeated: a stall, not a loss
    assert t.check(30.0, pending(*range(181, 500)), False, W) == W and t.timeout == 10.0  # backs off, no growth


def broker_publishes_received(port: int):
    """A client reading the broker's `$SYS/broker/publish/messages/received` (PUBLISH packets it took in);
    returns (latest value holder, client)."""
    seen = {"received": -1}
    client = make_client(BrokerSettings("127.0.0.1", port), f"sys-reader-{port}")

    def on_message(_c, _u, msg):
        if msg.payload.isdigit():
            seen["received"] = int(msg.payload)

    client.on_message = on_message
    connect_blocking(client, BrokerSettings("127.0.0.1", port))
    client.subscribe("$SYS/broker/publish/messages/received")
    client.loop_start()
    return seen, client


def test_a_burst_beyond_the_mqtt_id_space_reaches_the_broker_whole(tmp_path):
    """70,000 readings at full speed through the simulator's one connection while the broker is frozen: the
    simulator stops at its publish buffer instead of queueing past paho's 65,535 message ids (where paho
    refuses publishes and readings counted as sent never leave), and the broker then gets every reading once."""
    port = free_port()
    broker = start_standalone(tmp_path / "broker", stock_config(tmp_path / "broker", port, sys_interval=1), port)
    sim = Simulator(BrokerSettings("127.0.0.1", port),
                    SimOptions(devices=20, count=3_500, rate=0, site="burst", ack_timeout=10_000))
    seen, reader = broker_publishes_received(port)
    runner = threading.Thread(target=lambda: sim.run(deadline_s=120, wait_acks=False), daemon=True)
    try:
        sim.connect()
        send_signal(broker.pid, str(broker.config), signal.SIGSTOP)
        try:
            runner.start()
            # No PUBACK can come: the simulator must stop at its buffer and stay there (paho's keepalive, 10 s,
            # is longer than this wait, so the connection stays up).
            wait_for(lambda: sim.report.published >= sim.opt.publish_buffer, 20, "the publish buffer filled")
            time.sleep(1.0)
            assert sim.report.published == sim.opt.publish_buffer
            assert runner.is_alive()
        finally:
            send_signal(broker.pid, str(broker.config), signal.SIGCONT)
        runner.join(timeout=90)
        assert not runner.is_alive()
        assert sim.report.sent == sim.report.published == 70_000 and sim.report.refused == 0
        wait_for(lambda: seen["received"] >= 70_000, 60, f"the broker's count of publishes, have {seen['received']}")
        time.sleep(1.5)  # one more $SYS interval: nothing beyond the 70,000 (no resend, no duplicate)
        assert seen["received"] == 70_000
    finally:
        sim.stop()
        runner.join(timeout=10)
        reader.loop_stop()
        sim.close()
        broker.stop()



class AckWatcher:
    """A collector's view of the acks: the newest `upto` seen per device and how many acks arrived."""

    def __init__(self, port: int, prefix: str) -> None:
        self.newest: dict[str, int] = {}
        self.count = 0
        self.lock = threading.Lock()
        self.client = make_client(BrokerSettings("127.0.0.1", port), f"ack-watcher-{port}")
        self.client.on_message = self._on_message
        connect_blocking(self.client, BrokerSettings("127.0.0.1", port))
        self.client.subscribe(f"{prefix}/+/+/ack", qos=1)
        self.client.loop_start()

    def _on_message(self, _c, _u, msg) -> None:
        doc = json.loads(msg.payload)
        with self.lock:
            self.count += 1
            self.newest[doc["dev"]] = max(self.newest.get(doc["dev"], -1), doc["upto"])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def queueing_broker(directory, port: int) -> str:
    """Mosquitto's defaults (an in-flight window of 20 per client among them) but queueing without limit, so
    the watcher, a collector receiving every stream's acks at once, misses none."""
    return stock_config(directory, port, extra=["max_queued_messages 0"])


def ingest_without_reading(tmp_path, port: int, window: int | None = None) -> MqttIngest:
    """A gateway's MQTT ingest connected to the broker whose network loop never runs: nothing it is sent is read,
    as when the PUBACKs of its acks wait in the socket behind readings the broker pushed before them."""
    spool = Spool(tmp_path / "spool.db")
    ingest = MqttIngest(BrokerSettings("127.0.0.1", port), client_id=f"gw-{port}", prefix="ak", spool=spool,
                        writer=SpoolWriter(spool), ack_interval_s=0.0)
    if window is not None:
        ingest.ack_window = window
    ingest.session = MqttSession(ingest.settings, ingest.client_id, inflight_limit=ingest.ack_window)
    ingest.session.open()
    return ingest


def commit_rounds(ingest: MqttIngest, rounds: int, devices: int = 20) -> None:
    """`rounds` group commits, each raising every device's `upto` by one (as the spool writer reports them); what
    they queue is sent, and nothing is read (the network loop sends before it reads)."""
    for upto in range(rounds):
        ingest.committed([], [("s", Ack(f"d{d:02d}", "a", 1, upto, None)) for d in range(devices)])
        ingest.session.flush()


def test_acks_keep_flowing_while_their_pubacks_wait_behind_a_backlog(tmp_path):
    """Every round of acks reaches the collectors although none of the broker's PUBACKs has been read (paho's
    usual window of 100 let five rounds out and held the other 295 in its queue, to go out stale when the
    backlog ahead of the PUBACKs was read: seconds of silence that expire collectors' resend timers)."""
    port = free_port()
    broker = start_standalone(tmp_path / "broker", queueing_broker(tmp_path / "broker", port), port)
    watcher = AckWatcher(port, "ak")
    ingest = ingest_without_reading(tmp_path, port)
    try:
        commit_rounds(ingest, 300)
        wait_for(lambda: ingest.session.flush() or watcher.count >= 300 * 20, 20,
                 f"6,000 acks at the collectors, have {watcher.count}")
        assert watcher.newest == {f"d{d:02d}": 299 for d in range(20)}
    finally:
        ingest.session.close()
        watcher.close()
        broker.stop()


def test_acks_beyond_the_window_are_coalesced_to_the_newest_per_stream(tmp_path):
    """With the window full, later acks wait in the gateway, a newer one replacing an older one of its stream:
    once PUBACKs make room, each stream's newest `upto` goes out, not the queue of every intermediate one."""
    port = free_port()
    broker = start_standalone(tmp_path / "broker", queueing_broker(tmp_path / "broker", port), port)
    watcher = AckWatcher(port, "ak")
    ingest = ingest_without_reading(tmp_path, port, window=10)
    try:
        commit_rounds(ingest, 300)
        wait_for(lambda: watcher.count >= 10, 20, "the first window of acks")
        time.sleep(0.5)
        assert watcher.count == 10  # the window, and nothing more until PUBACKs are read
        for _ in range(100):  # read the PUBACKs (and send what they make room for), as the network loop does
            ingest.session.pump(0.01)
            ingest._publish_acks()
        wait_for(lambda: watcher.newest == {f"d{d:02d}": 299 for d in range(20)}, 20,
                 f"every stream's newest ack, have {watcher.newest}")
        assert watcher.count <= 10 + 20  # the first window, then one coalesced ack per stream
    finally:
        ingest.session.close()
        watcher.close()
        broker.stop()
