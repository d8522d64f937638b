"""A collector with two brokers: when its broker dies it moves to the other, and back when that one dies;
nothing is lost. Both brokers are served by gateways writing one database (the stand-ins share their rows)."""

from _sim import MiniGateway, make_collector, make_rtc, new_clock, run
from iotcollector.links import MqttLink
from umqtt import simple


def _two_gateways(b1, b2):
    gw1, gw2 = MiniGateway(b1), MiniGateway(b2)
    gw2.rows, gw2.held, gw2.upto = gw1.rows, gw1.held, gw1.upto  # one database behind both

    class Both:
        rows = gw1.rows

        def pump(self):
            gw1.pump()
            gw2.pump()

    return Both()


def test_collector_moves_between_brokers_nothing_lost():
    simple.reset()
    b1, b2 = simple.add_broker("b1"), simple.add_broker("b2")
    clock = new_clock()
    gw = _two_gateways(b1, b2)
    rtc, chip = make_rtc(1700000000)
    c = make_collector(clock, rtc=rtc)
    c.link = MqttLink([lambda: simple.MQTTClient("ft-1-a", "b1"), lambda: simple.MQTTClient("ft-1-a", "b2")],
                      "iot", "site-1", "ft-1")
    run(clock, [c], 5000, gateway=gw, chips=[chip])
    assert len(b1.published("reading")) == 5 and c.cache.count == 0
    b1.down()
    run(clock, [c], 20000, gateway=gw, chips=[chip])
    assert c.link.broker == 1 and c.link.switches == 1
    assert b2.published("reading") and c.cache.count <= 1  # acked through the second broker
    b1.restart()
    b2.down()
    run(clock, [c], 20000, gateway=gw, chips=[chip])
    assert c.link.broker == 0 and c.link.switches == 2
    run(clock, [c], 2000, gateway=gw, chips=[chip])
    seqs = sorted(k[3] for k in gw.rows)
    assert seqs == list(range(len(seqs))) and len(seqs) >= 45, seqs  # contiguous: nothing lost
    assert c.cache.count <= 1


def test_one_broker_link_never_switches():
    simple.reset()
    link = MqttLink(lambda: simple.MQTTClient("x", "broker"), "iot", "s", "x")
    simple.BROKER.down()
    try:
        link.connect("{}", "{}")
    except OSError:
        pass
    assert link.broker == 0 and link.switches == 0
