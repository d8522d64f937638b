"""Clients of a replicated topology: `connect(mode=…)` (the primary or the next healthy replica), the
HA-group client behind `connect(group=…)`, read selection, and the retry/read-only rules they share.

Modules: `connect` (Client, connect), `groups` (GroupClient, http_lookup, connect_group), `reads`
(TopologySource, ReadSelector, rotations), `retry` (retryable errors, backoff, read-only check, SmoothWeighted).
Nothing here imports `gateway.ops`: the operations use the clients, never the other way round.
"""

from gateway.client.connect import Client, NoServer, connect
from gateway.client.groups import GroupClient, connect_group, http_lookup

__all__ = ["Client", "GroupClient", "NoServer", "connect", "connect_group", "http_lookup"]
