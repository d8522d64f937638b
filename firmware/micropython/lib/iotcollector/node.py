"""A node of a redundant pair: its role machine and heartbeat transport driving a Collector.

The heartbeat part runs at the start of every step and also between the sends of a backlog
(``Collector.on_idle``), so a long replay after an outage does not silence the heartbeat.
"""

from iotcollector.heartbeat import decode_beat


class PrimaryNode:
    """Sends the heartbeat; joins carefully after a (re)start (see pair.PrimaryRole)."""

    def __init__(self, collector, role, sender) -> None:
        self.collector = collector
        self.role = role
        self.sender = sender
        collector.set_role(role.role)
        collector.on_idle = self.heartbeat

    def heartbeat(self) -> None:
        now = self.collector.clock.ticks_ms()
        if self.role.beat_due(now):
            delivered, reply = self.sender.exchange(self.role.frame())
            self.collector.set_role(self.role.beat_result(delivered, reply))

    def step(self) -> None:
        self.heartbeat()
        self.collector.step()


class SecondaryNode:
    """Watches the heartbeat; takes over after the timeout and hands back (see pair.SecondaryRole)."""

    def __init__(self, collector, role, receiver) -> None:
        self.collector = collector
        self.role = role
        self.receiver = receiver
        collector.set_role(role.role)
        receiver.set_reply(role.reply())
        collector.on_idle = self.heartbeat

    def heartbeat(self) -> None:
        now = self.collector.clock.ticks_ms()
        beat = decode_beat(self.receiver.receive())
        if beat is not None:
            self.role.on_beat(now, beat[0])
        self.role.poll(now)
        self.receiver.set_reply(self.role.reply())
        self.collector.set_role(self.role.role)

    def step(self) -> None:
        self.heartbeat()
        self.collector.step()
