"""Redundant pair scenarios over the simulated I2C heartbeat: takeover exactly after the timeout, the
coverage bound, hand-back with hysteresis, at most one heartbeat period with both nodes active, all of it
across the tick counter's wraparound. The GPIO pulse line is checked too."""

from _sim import MiniGateway, make_collector, new_clock
from iotcollector.beatlink import MEM_SIZE, I2cBeatSender, PulseBeatReceiver, PulseBeatSender, TargetMemBeatReceiver
from iotcollector.node import PrimaryNode, SecondaryNode
from iotcollector.pair import PrimaryRole, SecondaryRole
from simparts import MemDevice, SimI2C
from umqtt import simple

PERIOD = 1000  # heartbeat period
TIMEOUT = 3500
SAMPLE = 1000
STEP = 10
TICKS = 1 << 20  # wraps every ~17.5 min of simulated time
ADDR = 0x42


class Pair:
    """Two nodes on one I2C bus (or one GPIO line), one fake broker, one gateway stand-in."""

    def __init__(self, start, gpio=False):
        self.clock = new_clock(start, TICKS)
        self.broker = simple.reset()
        self.gateway = MiniGateway(self.broker)
        self.bus = SimI2C()
        self.samples = []  # (elapsed_ms, node)
        self.both_active_ms = 0
        self.role_log = []  # (elapsed_ms, node, role)
        self.beats = []  # elapsed_ms of every delivered beat
        self.gpio = gpio
        if gpio:
            import machine

            self.line_out = machine.Pin("hb", machine.Pin.OUT, value=0)
            self.line_in = machine.Pin("hb", machine.Pin.IN)
        self.mem = bytearray(MEM_SIZE)
        self.bus.attach(ADDR, MemDevice(self.mem))
        self.a = self.start_primary(boot=1)
        cb = make_collector(self.clock, dev="pair-1", node="b", boot=1, sensor=self.sensor("b"), sample_ms=SAMPLE)
        if gpio:
            receiver = PulseBeatReceiver(self.line_in)
        else:
            receiver = TargetMemBeatReceiver(self.mem)
        self.b = SecondaryNode(cb, SecondaryRole(self.clock, TIMEOUT, 3), receiver)
        self.a_alive = True

    def sensor(self, node):
        def read():
            self.samples.append((self.clock.elapsed_ms, node))
            return 20.5
        return read

    def start_primary(self, boot):
        ca = make_collector(self.clock, dev="pair-1", node="a", boot=boot, sensor=self.sensor("a"), sample_ms=SAMPLE)
        sender = PulseBeatSender(self.line_out) if self.gpio else I2cBeatSender(self.bus, ADDR)
        pair = self

        class Recording:
            def exchange(self, frame):
                delivered, reply = sender.exchange(frame)
                if delivered:
                    pair.beats.append(pair.clock.elapsed_ms)
                return delivered, reply

        return PrimaryNode(ca, PrimaryRole(self.clock, PERIOD, 3), Recording())

    def run(self, ms):
        t = 0
        while t < ms:
            if self.a_alive:
                self.a.step()
            self.b.step()
            self.gateway.pump()
            roles = (self.a_alive and self.a.collector.is_active(), self.b.collector.is_active())
            for node, active in (("a", roles[0]), ("b", roles[1])):
                last = [r for r in self.role_log if r[1] == node]
                if not last or last[-1][2] != active:
                    self.role_log.append((self.clock.elapsed_ms, node, active))
            if roles[0] and roles[1]:
                self.both_active_ms += STEP
            self.clock.advance(STEP)
            t += STEP

    def kill_primary(self):
        self.a_alive = False
        self.broker.down()  # its MQTT connection dies with it; the broker comes back for the others
        self.broker.restart()

    def restart_primary(self):
        self.a = self.start_primary(boot=2)
        self.a_alive = True

    def became_active(self, node, after):
        for t, n, active in self.role_log:
            if n == node and active and t >= after:
                return t
        return None


def _samples(pair, node, lo=0, hi=10 ** 12):
    return [t for t, n in pair.samples if n == node and lo <= t < hi]


def test_startup_primary_active_secondary_standby():
    pair = Pair(start=0)
    pair.run(8000)
    assert pair.a.collector.role == "active" and pair.b.collector.role == "standby"
    assert len(_samples(pair, "a")) == 8
    assert _samples(pair, "b") == []
    assert pair.both_active_ms == 0


def _takeover(start, phase):
    pair = Pair(start)
    pair.run(10000 + phase)
    death = pair.clock.elapsed_ms
    pair.kill_primary()
    pair.run(10000)
    last_beat = max(t for t in pair.beats if t < death)
    takeover = pair.became_active("b", death)
    assert takeover is not None
    # exactly after the timeout (to the loop's step), never earlier
    assert TIMEOUT <= takeover - last_beat < TIMEOUT + STEP, (takeover - last_beat)
    last_a = max(_samples(pair, "a"))
    first_b = min(_samples(pair, "b"))
    assert first_b - last_a <= TIMEOUT + SAMPLE, (start, phase, first_b - last_a)
    return pair


def test_takeover_coverage_bound_at_every_phase():
    for phase in (0, 10, 250, 500, 740, 990):
        _takeover(0, phase)


def test_takeover_across_tick_wraparound():
    for before_wrap in (1000, 3000, 12000, 14000):  # the wrap falls before, during and after the silence
        pair = _takeover(TICKS - before_wrap, 330)
        assert pair.clock.elapsed_ms > before_wrap


def test_hand_back_with_hysteresis_and_bounded_overlap():
    pair = Pair(start=TICKS - 25000)  # the wrap happens during the outage
    pair.run(10000)
    pair.kill_primary()
    pair.run(15000)
    assert pair.b.collector.role == "active"
    back = pair.clock.elapsed_ms
    pair.restart_primary()
    pair.run(15000)
    assert pair.a.collector.role == "active" and pair.b.collector.role == "standby"
    handed = pair.became_active("a", back)
    # hysteresis: the primary needs 3 delivered beats before it takes the role back
    assert handed - back >= 2 * PERIOD, handed - back
    assert pair.both_active_ms <= PERIOD, pair.both_active_ms
    # coverage: no gap in the pair's samples beyond the takeover bound, and none at the hand-back
    times = sorted(t for t, _ in pair.samples)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) <= TIMEOUT + SAMPLE
    around = [b - a for a, b in zip(times, times[1:]) if back <= b]
    assert max(around) <= SAMPLE + STEP, max(around)
    # identities: each node its own boot and seq, never colliding, no gap per (node, boot)
    rows = pair.gateway.rows
    by_key = {}
    for _dev, node, boot, seq in rows:
        by_key.setdefault((node, boot), []).append(seq)
    assert sorted(by_key) == [("a", 1), ("a", 2), ("b", 1)]
    for key, seqs in by_key.items():
        assert sorted(seqs) == list(range(len(seqs))), key


def test_one_stray_beat_does_not_hand_back():
    pair = Pair(start=0)
    pair.run(3000)
    pair.kill_primary()
    pair.run(6000)
    assert pair.b.collector.role == "active"
    role = pair.b.role
    # a flapping primary: one joining beat, then silence longer than the timeout, then one more
    from iotcollector.heartbeat import JOINING

    role.on_beat(pair.clock.ticks_ms(), JOINING)
    pair.run(TIMEOUT + 500)
    role.on_beat(pair.clock.ticks_ms(), JOINING)
    pair.run(500)
    assert pair.b.collector.role == "active"


def test_secondary_loss_does_not_move_primary():
    pair = Pair(start=0)
    pair.run(3000)
    pair.bus.detach(ADDR)  # the secondary vanished: beats NACK
    pair.run(5000)
    assert pair.a.collector.role == "active"
    assert len(_samples(pair, "a")) == 8


def test_primary_joins_at_once_when_partner_is_standby():
    pair = Pair(start=0)
    pair.run(3000)
    pair.kill_primary()
    pair.run(1000)  # a quick reboot, shorter than the timeout: the secondary stayed standby
    assert pair.b.collector.role == "standby"
    back = pair.clock.elapsed_ms
    pair.restart_primary()
    pair.run(3000)
    assert pair.became_active("a", back) - back <= STEP
    assert pair.both_active_ms == 0


def test_gpio_pulse_line_takeover_and_hand_back():
    import machine

    machine.reset_all()
    pair = Pair(start=TICKS - 5000, gpio=True)
    pair.run(6000)
    assert pair.a.collector.role == "active" and pair.b.collector.role == "standby"
    pair.kill_primary()
    death = pair.clock.elapsed_ms
    pair.run(8000)
    assert pair.b.collector.role == "active"
    assert min(_samples(pair, "b")) - max(_samples(pair, "a")) <= TIMEOUT + SAMPLE
    assert TIMEOUT <= pair.became_active("b", death) - max(pair.beats) < TIMEOUT + STEP
    pair.restart_primary()
    pair.run(8000)
    assert pair.a.collector.role == "active" and pair.b.collector.role == "standby"
    # the line carries only active beats: hand-back after N of them, so N - 1 periods of overlap at most
    # (protocol section 9); the I2C transport's bound is one period (test above)
    assert pair.both_active_ms <= (3 - 1) * PERIOD


def test_heartbeat_continues_during_a_long_replay():
    # each publish of the backlog takes 400 ms (a slow link): a batch of 10 outlasts the takeover timeout,
    # so the primary must keep beating between the sends
    pair = Pair(start=0)
    pair.run(3000)
    pair.broker.down()
    pair.run(30000)  # node a caches 30 readings
    pair.broker.restart()
    a = pair.a.collector
    slow = []

    def slow_publish(send):
        def wrapped(payload):
            send(payload)
            pair.clock.advance(400)  # the time the send took
            pair.b.step()  # the other board runs on meanwhile
            slow.append(1)
        return wrapped

    a.link.send_reading = slow_publish(a.link.send_reading)
    pair.run(15000)
    assert len(slow) >= 30
    assert a.cache.count <= 2
    assert pair.b.collector.role == "standby" and pair.both_active_ms == 0
