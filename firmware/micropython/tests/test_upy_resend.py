"""The collector's resend timer and window (protocol section 10): no resend while acks make progress, a
jittered wait in [T/2, T] that doubles per expiry up to the cap, only the W oldest unacknowledged records
per expiry or reconnect, the back-off reset by progress, and the shared vectors the C++ core replays too."""

from _sim import make_collector, new_clock
from _support import vectors
from iotcollector.resend import ResendTimer
from umqtt import simple

ACK_TOPIC = "iot/site-1/ft-1/ack"


class Rig:
    """A collector on the fake broker that records only when told (standby: no schedule) and is acked by
    hand; every reading it publishes is classified as first send or resend."""

    def __init__(self, seed=1, base_ms=5000, window=8):
        self.clock = new_clock()
        self.broker = simple.reset()
        self.c = make_collector(self.clock, ack_timeout_ms=base_ms, role="standby")
        self.c.cfg.resend_window = window
        self.c.timer = ResendTimer(base_ms, 60000, window, seed)
        self.pos = 0
        self.sent = set()
        self.resends = []  # (time, seq)
        self.c.step()  # connects
        assert self.c.supervisor.up

    def record(self, n):
        for _ in range(n):
            self.c.sample(self.clock.elapsed_ms)

    def ack(self, upto):
        self.broker.publish(ACK_TOPIC, '{"v":1,"dev":"ft-1","node":"a","boot":1,"upto":%d}' % upto, 1, False)

    def poll(self):
        now = self.clock.elapsed_ms
        self.c.step()
        log = self.broker.log
        while self.pos < len(log):
            topic, payload, _qos, _retain = log[self.pos]
            self.pos += 1
            if not topic.endswith("/reading"):
                continue
            seq = int(payload.split('"seq":')[1].split(",")[0])
            if seq in self.sent:
                self.resends.append((now, seq))
            self.sent.add(seq)
        self.clock.advance(10)

    def run_until(self, t):
        while self.clock.elapsed_ms < t:
            self.poll()

    def expiry_poll(self, armed_at, wait):
        """The first 10 ms poll at or after the deadline."""
        return (armed_at + wait + 9) // 10 * 10

    def resent_between(self, t0, t1):
        return [s for (t, s) in self.resends if t0 <= t < t1]


def test_no_resend_while_acks_make_progress():
    rig = Rig(seed=7)
    rig.record(30)
    for k in range(30):  # one record acknowledged every 2.4 s: sooner than the shortest wait (2.5 s)
        rig.run_until(2400 * (k + 1))
        rig.ack(k)
        assert rig.c.timer.timeout_ms == 5000
    rig.run_until(2400 * 31)
    assert rig.resends == []
    assert rig.c.cache.count == 0


def test_backoff_doubles_with_jittered_waits_up_to_the_cap():
    for seed in range(1, 21):
        rig = Rig(seed=seed)
        rig.record(3)
        t, expected = 0, 5000
        for _ in range(8):
            wait = rig.c.timer.wait_ms
            assert rig.c.timer.timeout_ms == expected, seed
            assert expected // 2 <= wait <= expected, (seed, wait)
            e = rig.expiry_poll(t, wait)
            rig.run_until(e)
            assert rig.resent_between(t + 1, e) == [], seed  # nothing before the wait is over
            rig.run_until(e + 10)
            assert rig.resent_between(e, e + 10) == [0, 1, 2], seed
            t = e
            expected = min(expected * 2, 60000)
        assert rig.c.timer.timeout_ms == 60000


def test_jitter_spreads_over_the_whole_range():
    waits = []
    for seed in range(1, 201):
        timer = ResendTimer(5000, 60000, 8, seed)
        waits.append(timer.arm())
    assert 2500 <= min(waits) < 2700 and 4800 < max(waits) <= 5000


def test_an_expiry_resends_only_the_window_of_oldest_records():
    rig = Rig(seed=3, window=8)
    rig.record(30)
    wait = rig.c.timer.wait_ms
    rig.run_until(wait + 100)
    assert rig.resent_between(0, wait + 100) == list(range(8))
    rig.record(1)  # sampled now: never sent, so it goes out although the window is spent
    rig.run_until(wait + 120)
    assert 30 in rig.sent and rig.resent_between(wait + 100, wait + 120) == []
    rig.ack(11)
    rig.run_until(wait + 130)
    assert rig.c.timer.timeout_ms == 5000
    t, w2 = rig.clock.elapsed_ms - 10, rig.c.timer.wait_ms
    rig.run_until(t + w2 + 100)
    assert rig.resent_between(t, t + w2 + 100) == list(range(12, 20))


def test_a_reconnect_resends_one_window_at_once():
    rig = Rig(seed=5, window=8)
    rig.record(20)
    rig.run_until(100)
    rig.broker.down()
    rig.run_until(200)
    assert not rig.c.supervisor.up
    rig.record(1)  # sampled while down: never sent
    rig.broker.restart()
    rig.run_until(20000)  # the supervisor reconnects after its back-off; acks never come
    up_at = rig.resends[0][0]
    # at the reconnect: the 8 oldest at once, none of the other 12 before the timer expires (>= 2.5 s)
    assert rig.resent_between(up_at, up_at + 2400) == list(range(8))
    assert 20 in rig.sent  # the record never sent went out too


def test_progress_resets_the_backoff():
    rig = Rig(seed=9)
    rig.record(4)
    t = 0
    for _ in range(3):  # three expiries: T = 40 s
        t = rig.expiry_poll(t, rig.c.timer.wait_ms)
        rig.run_until(t + 10)
    assert rig.c.timer.timeout_ms == 40000
    rig.ack(0)
    rig.run_until(t + 30)
    assert rig.c.timer.timeout_ms == 5000 and rig.c.timer.wait_ms <= 5000
    rig.ack(0)  # a repeated ack is no progress
    rig.run_until(t + 40)
    assert rig.c.timer.timeout_ms == 5000


def test_resend_vectors_shared_with_the_cpp_core():
    v = vectors("resend_timer.json")
    for case in v["cases"]:
        rig = Rig(seed=case["seed"], base_ms=v["base_ms"], window=v["window"])
        rig.c.timer = ResendTimer(v["base_ms"], v["cap_ms"], v["window"], case["seed"])
        rounds = []
        last = None
        while rig.clock.elapsed_ms < case["end_ms"]:
            now = rig.clock.elapsed_ms
            for ev in case["events"]:
                if ev["t"] == now and "record" in ev:
                    rig.record(ev["record"])
                elif ev["t"] == now and "ack" in ev:
                    rig.ack(ev["ack"])
            before = len(rig.resends)
            rig.poll()
            for (t, seq) in rig.resends[before:]:
                if last is None or t - last >= 1000:
                    rounds.append({"t": t, "seqs": [], "timeout_ms": rig.c.timer.timeout_ms,
                                   "wait_ms": rig.c.timer.wait_ms})
                rounds[-1]["seqs"].append(seq)
                last = t
        assert rounds == case["rounds"], (case["name"], rounds, case["rounds"])
