"""The topology layer: what each server is (model), how to ask it (dialect, discovery), what to decide
(analysis), and the epoch that says who the primary is (epoch, promote).

    from gateway.topology import discover, writer_primary, Credentials
    snap = discover(["127.0.0.1:3306"], Credentials("iotgw", "secret"))
    print(writer_primary(snap).primary)
"""

from gateway.topology.analysis import PrimaryDecision, rank_candidates, replica_health, roles, tree, writer_primary
from gateway.topology.conn import Credentials
from gateway.topology.discovery import discover, probe
from gateway.topology.model import ServerState, Snapshot
from gateway.topology.snapshots import load_snapshot

__all__ = ["Credentials", "PrimaryDecision", "ServerState", "Snapshot", "discover", "load_snapshot", "probe",
           "rank_candidates", "replica_health", "roles", "tree", "writer_primary"]
