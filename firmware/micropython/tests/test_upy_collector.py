"""The collector's main loop against the fake broker and the gateway stand-in: outage and replay with the
original timestamps, resend after the ack timeout, RTC set from an ack only when lost, full cache policy,
restart with a persisted boot counter and cache, last will, serial link."""

import json
import os

from _sim import MiniGateway, make_collector, make_rtc, new_clock, run
from _support import tmpdir
from iotcollector.bootcount import next_boot, read_boot
from iotcollector.cachelog import CacheLog, FileStorage, MemoryStorage, PowerCut, Record
from iotcollector.protocol import frame, parse_line
from umqtt import simple


def _readings(broker):
    return [json.loads(p) for p in broker.published("reading")]


def test_outage_caches_and_replays_with_original_timestamps():
    clock = new_clock()
    broker = simple.reset()
    gw = MiniGateway(broker)
    rtc, chip = make_rtc(1700000000)
    c = make_collector(clock, rtc=rtc)
    run(clock, [c], 5000, gateway=gw, chips=[chip])
    assert c.cache.count == 0 and len(gw.rows) == 5
    broker.down()
    run(clock, [c], 20000, gateway=gw, chips=[chip])
    assert c.cache.count == 20  # every reading of the outage is cached
    broker.restart()
    run(clock, [c], 20000, gateway=gw, chips=[chip])
    assert c.cache.count == 0
    seqs = sorted(k[3] for k in gw.rows)
    assert seqs == list(range(45)), seqs  # nothing lost
    assert len(gw.rows) == 45  # one row per identity
    for (_dev, _node, _boot, seq), r in gw.rows.items():
        assert r["ts"] == 1700000000000 + seq * 1000, (seq, r["ts"])  # the sample's own RTC time
        if seq < 5 or seq >= 40:
            assert r["cached"] is False, seq  # sent live, before the outage and once the backlog is gone
        elif seq < 25:
            assert r["cached"] is True, seq  # sampled during the outage, replayed from the cache


def test_resend_after_ack_timeout_when_a_message_is_lost():
    clock = new_clock()
    broker = simple.reset()
    gw = MiniGateway(broker)
    c = make_collector(clock, ack_timeout_ms=5000)
    run(clock, [c], 3000, gateway=gw)
    broker.drop_next = 1  # the broker acknowledges seq 3 and loses it (a crash between save points)
    lost_at = clock.elapsed_ms
    run(clock, [c], 2400, gateway=gw)  # shorter than any jittered wait (at least half the timeout)
    assert 3 not in [k[3] for k in gw.rows]
    assert c.cache.count == 3  # 3, 4, 5 wait for the watermark
    first_resend = [None]

    def watch(now):
        if first_resend[0] is None and c.resent:
            first_resend[0] = now

    run(clock, [c], 7600, gateway=gw, each=watch)
    assert sorted(k[3] for k in gw.rows) == list(range(13))
    assert c.cache.count == 0
    # not before the jittered wait (in [T/2, T], protocol section 10): the watermark stopped moving at
    # seq 2 (acked when 3 was sent)
    assert 2500 - 10 <= first_resend[0] - lost_at <= 5000 + 10, first_resend[0] - lost_at
    assert c.resent >= 3  # at least 3, 4 and 5, unacknowledged at the expiry


def test_rtc_set_from_ack_only_when_lost():
    clock = new_clock()
    broker = simple.reset()
    gw = MiniGateway(broker, clock_ms=1700000000500)
    rtc, chip = make_rtc(running=False)  # a fresh chip: halted
    c = make_collector(clock, rtc=rtc)
    run(clock, [c], 3000, gateway=gw, chips=[chip])
    rows = [gw.rows[k] for k in sorted(gw.rows)]
    assert (rows[0]["ts"], rows[0]["src"]) == (None, "none")  # the first sample had no valid clock
    assert c.rtc_sets == 1
    assert rows[-1]["src"] == "rtc" and 1700000000000 <= rows[-1]["ts"] <= 1700000003000
    # a running, valid RTC is never moved by a gateway clock
    gw.clock_ms = 1800000000000
    run(clock, [c], 3000, gateway=gw, chips=[chip])
    assert c.rtc_sets == 1
    assert rtc.now_ms()[0] < 1700000010000


def test_rtc_reset_to_2000_is_set_from_ack():
    clock = new_clock()
    broker = simple.reset()
    gw = MiniGateway(broker, clock_ms=1700000000500)
    rtc, chip = make_rtc(running=False)
    chip.mem[0] = 0x00  # oscillator running but at the 2000-01-01 reset value: lost time, not halted
    c = make_collector(clock, rtc=rtc)
    run(clock, [c], 3000, gateway=gw, chips=[chip])
    first = gw.rows[("ft-1", "a", 1, 0)]
    assert first["src"] == "rtc" and first["ts"] == 946684800000  # recorded as it was, never rewritten
    assert c.rtc_sets == 1
    assert rtc.now_ms()[0] >= 1700000000000


def test_full_cache_drops_new_samples_without_seq_gap():
    clock = new_clock()
    broker = simple.reset()
    gw = MiniGateway(broker)
    rtc, chip = make_rtc()
    c = make_collector(clock, capacity=5, rtc=rtc)
    broker.down()
    run(clock, [c], 10000, gateway=gw, chips=[chip])
    assert c.cache.count == 5 and c.dropped == 5 and c.seq == 5
    broker.restart()
    run(clock, [c], 20000, gateway=gw, chips=[chip])
    assert sorted(k[3] for k in gw.rows) == list(range(len(gw.rows)))  # contiguous: ack can always advance
    assert len(gw.rows) >= 15
    # seq 5 is the first sample after the cache had room again, not the sixth sample taken
    assert gw.rows[("ft-1", "a", 1, 5)]["ts"] - gw.rows[("ft-1", "a", 1, 4)]["ts"] >= 5000
    status = json.loads(broker.retained["iot/site-1/ft-1/status"])
    assert status["state"] == "online" and status["dropped"] == c.dropped >= 5  # still full until the reconnect


def test_reconnect_attempts_back_off():
    clock = new_clock()
    broker = simple.reset()
    c = make_collector(clock)
    broker.down()
    run(clock, [c], 60000)
    # base 500 ms doubling to 8 s with jitter: a handful of attempts a minute, never one per loop
    assert 8 <= c.supervisor.attempts <= 16, c.supervisor.attempts


def test_status_retained_last_will_and_qos1():
    clock = new_clock()
    broker = simple.reset()
    gw = MiniGateway(broker)
    c = make_collector(clock)
    run(clock, [c], 2000, gateway=gw)
    topics = [(t, q, r) for (t, p, q, r) in broker.log]
    assert ("iot/site-1/ft-1/status", 1, True) in topics
    assert all(q == 1 and not r for (t, q, r) in topics if t.endswith("/reading"))
    client = broker.clients[0]
    assert client.will == ("iot/site-1/ft-1/status", '{"v":1,"dev":"ft-1","node":"a","state":"offline"}', True, 1)
    broker.down()
    assert json.loads(broker.retained["iot/site-1/ft-1/status"])["state"] == "offline"


def test_restart_keeps_unacked_records_and_new_boot():
    folder = tmpdir()
    clock = new_clock()
    broker = simple.reset()
    gw = MiniGateway(broker)
    path = folder + "/cache.log"
    boot = next_boot(folder + "/boot", os)
    assert boot == 0
    c = make_collector(clock, boot=boot, storage=FileStorage(path, os))
    run(clock, [c], 3000, gateway=gw)
    gw.acking = False
    run(clock, [c], 3000, gateway=gw)  # 3 readings sent but never acknowledged
    # power cut in the middle of the next cache append
    c.cache.storage = _Cut(path, 9)
    try:
        run(clock, [c], 2000, gateway=gw)
        raise AssertionError("no power cut")
    except PowerCut:
        pass
    gw.acking = True
    cache = CacheLog(FileStorage(path, os), 100)
    # the 3 unacknowledged records, behind the 3 acknowledged ones the lazy trim had not saved yet (fewer
    # than one mark): those are replayed too, harmlessly (protocol section 8)
    assert cache.torn_bytes == 9 and [r.seq for r in cache.records()] == [0, 1, 2, 3, 4, 5]
    boot2 = next_boot(folder + "/boot", os, cache)
    assert boot2 == 1 and read_boot(folder + "/boot") == 1
    before = len(gw.arrivals)
    c2 = make_collector(clock, boot=boot2, storage=FileStorage(path, os))
    run(clock, [c2], 5000, gateway=gw)
    assert c2.cache.count == 0
    keys = sorted(gw.rows)
    assert [k[3] for k in keys if k[2] == 0] == list(range(6))  # one row per identity, replays or not
    assert [k[3] for k in keys if k[2] == 1] == list(range(5))
    replayed = [(r["seq"], r["cached"]) for r in gw.arrivals[before:] if r["boot"] == 0]
    assert replayed[:6] == [(s, True) for s in range(6)], replayed  # after the restart, oldest first


class _Cut(FileStorage):
    def __init__(self, path, cut):
        FileStorage.__init__(self, path, os)
        self.cut = cut

    def append(self, data):
        FileStorage.append(self, data[:self.cut])
        raise PowerCut()


def test_boot_counter_survives_lost_file():
    folder = tmpdir()
    cache = CacheLog(MemoryStorage(), 10)
    cache.append(Record(41, 0, None, "none", 0))
    assert next_boot(folder + "/boot", os, cache) == 42  # never reuse a boot still in the cache
    assert next_boot(folder + "/boot", os) == 43


class _UartPair:
    """Two ends of a serial cable: the collector's UART and the gateway's."""

    def __init__(self):
        self.to_gateway = b""
        self.to_collector = b""

    def write(self, data):
        self.to_gateway += data

    def read(self):
        data, self.to_collector = self.to_collector, b""
        return data or None


def test_serial_link_frames_and_acks():
    from iotcollector.links import SerialLink

    clock = new_clock()
    c = make_collector(clock)
    uart = _UartPair()
    c.link = SerialLink(uart)
    held = set()
    for _ in range(5):
        for _ in range(100):
            c.step()
            clock.advance(10)
        lines, uart.to_gateway = uart.to_gateway.split(b"\n")[:-1], b""
        for line in lines:
            kind, payload = parse_line(line)
            if kind == "R":
                r = json.loads(payload)
                held.add(r["seq"])
                upto = max(s for s in held if all(x in held for x in range(s + 1)))
                ack = '{"v":1,"dev":"ft-1","node":"a","boot":1,"upto":%d}' % upto
                uart.to_collector += b"console text\n!A {broken}*0000\n" + (frame("A", ack) + "\r\n").encode()
    c.step()  # reads the last acks (and takes sample 5)
    assert held == set(range(5))
    assert [r.seq for r in c.cache.records()] == [5]


def test_client_errors_of_any_type_mean_link_down():
    # umqtt.simple signals a confused connection with AssertionError/IndexError/MQTTException too
    clock = new_clock()
    broker = simple.reset()
    gw = MiniGateway(broker)
    c = make_collector(clock)
    run(clock, [c], 2000, gateway=gw)
    client = broker.clients[0]

    def broken_publish(topic, msg, retain=False, qos=0):
        raise AssertionError("bad PUBACK")

    client.publish = broken_publish
    run(clock, [c], 1500, gateway=gw)  # the loop survives, the link is marked down and reconnected
    assert c.supervisor.attempts >= 2
    run(clock, [c], 3000, gateway=gw)
    assert c.supervisor.up and c.cache.count <= 1
    assert sorted(k[3] for k in gw.rows) == list(range(len(gw.rows))) and len(gw.rows) >= 6


def test_periodic_status_tells_cache_fill_dropped_reset_and_clock():
    # The gateway stops acknowledging (it is there, it just holds nothing): the cache fills, samples
    # are dropped, and the periodic status says so, retained, without any role change.
    clock = new_clock()
    broker = simple.reset()
    rtc, chip = make_rtc(1700000000)
    c = make_collector(clock, rtc=rtc, capacity=5, status_ms=2000)
    c.reset_reason = "wdt"
    run(clock, [c], 9000, chips=[chip])
    statuses = [json.loads(p) for p in broker.published("status")]
    assert len(statuses) >= 4  # at connect, then every 2 s
    last = json.loads(broker.retained["iot/site-1/ft-1/status"])
    assert last == statuses[-1]
    assert (last["cached"], last["cap"], last["reset"], last["clock"], last["period"], last["store_err"]) == (
        5, 5, "wdt", "rtc", 1000, 0)
    assert last["dropped"] == c.dropped >= 3
    assert statuses[0]["dropped"] == 0
    # a clock that lost its time reads "lost"
    chip.mem[0] |= 0x80  # clock halt: the chip lost its time
    run(clock, [c], 2100, chips=[chip])
    assert json.loads(broker.retained["iot/site-1/ft-1/status"])["clock"] == "lost"


def test_cache_write_error_is_counted_not_raised():
    clock = new_clock()
    broker = simple.reset()

    class FullFlash(MemoryStorage):
        def append(self, data):
            raise OSError(28)  # ENOSPC

    c = make_collector(clock, storage=FullFlash(), status_ms=1000)
    run(clock, [c], 3500)
    assert c.store_err >= 3 and c.dropped == c.store_err and c.seq == 0
    assert json.loads(broker.retained["iot/site-1/ft-1/status"])["store_err"] == c.store_err


def test_standby_node_sampling_every_120_s_stays_connected_by_keepalive_pings():
    # Mosquitto drops a client that sent nothing for 1.5 x keepalive and publishes its will: a node that
    # publishes every 120 s with a 30 s keepalive must ping in between, from the loop.
    from iotcollector.collector import Collector, CollectorConfig
    from iotcollector.linksup import LinkSupervisor
    from iotcollector.links import MqttLink

    from _sim import Rand

    clock = new_clock()
    broker = simple.reset()
    broker.clock = lambda: clock.elapsed_ms
    link = MqttLink(lambda: simple.MQTTClient("ft-1-b", "broker", keepalive=30), "iot", "site-1", "ft-1", clock, 30)
    cfg = CollectorConfig("ft-1", "b", "site-1", "iot", "C", 120000, 5000, status_ms=0)
    rtc, chip = make_rtc(1700000000)
    c = Collector(cfg, clock, rtc, lambda: 1.0, CacheLog(MemoryStorage(), 50), link,
                  LinkSupervisor(clock, Rand(), base_ms=500, max_ms=8000), 1, "standby")
    run(clock, [c], 10 * 60 * 1000, step_ms=20, chips=[chip])
    assert broker.connects == 1, "the broker dropped the node: it reconnected"
    assert not [p for p in broker.published("status") if '"offline"' in p], "the last will was published"
    times = [ms for _, ms in broker.pings]
    assert len(times) >= 10 * 60 // 15 - 1, len(times)
    assert max(b - a for a, b in zip(times, times[1:])) <= 15000 + 20
    # the same without pings: the broker drops the node and its will says offline
    broker = simple.reset()
    broker.clock = lambda: clock.elapsed_ms
    link = MqttLink(lambda: simple.MQTTClient("ft-1-b", "broker", keepalive=30), "iot", "site-1", "ft-1")
    c = Collector(cfg, clock, rtc, lambda: 1.0, CacheLog(MemoryStorage(), 50), link,
                  LinkSupervisor(clock, Rand(), base_ms=500, max_ms=8000), 2, "standby")
    run(clock, [c], 2 * 60 * 1000, step_ms=20, chips=[chip])
    assert broker.connects > 1 and [p for p in broker.published("status") if '"offline"' in p]
