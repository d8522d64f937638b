"""`iotgw sandbox add-replica`: one more sandbox server, started empty and cloned from a replica.

Built on the Sandbox's public API (`nodes`, `next_server_id`, `save`, `restart`, the `mariadb` helpers), like
`sandbox rebuild`, and on `gateway.ops.clone` (the same code as `iotgw topology clone`).
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.ops.clone import clone
from gateway.sandbox import Sandbox, SandboxError
from gateway.sandbox import mariadb as sandbox_mariadb
from gateway.sandbox.nodes import MARIADB, Node
from gateway.sandbox.ports import free_port
from gateway.sandbox.rebuild import sandbox_admin
from gateway.topology import analysis
from gateway.topology.discovery import discover


def add_replica(sb: Sandbox, donor: str | None = None, progress: Callable[[str], None] | None = None) -> tuple[str, list[str]]:
    """Start a new, empty server `dbN` with a fresh server id, clone a replica's data onto it, replicate from the
    primary and wait until it has caught up. Returns its name and the steps."""
    say = progress or (lambda _m: None)
    admin = sandbox_admin(sb)
    live = [n for n in sb.db_names() if sb.is_alive(n) and not sb.is_frozen(n)]
    snap = discover([sb.endpoint(n) for n in live], admin.with_timeouts(connect=1, io=3))
    primary = analysis.writer_primary(snap).primary
    if primary is None:
        raise SandboxError("no primary to replicate from: fail over first")
    if donor is not None:
        donor_ep = sb.endpoint(donor)
    else:
        healthy = [h.server for h in analysis.healthy_replicas(snap, primary)]
        donor_ep = healthy[0].endpoint if healthy else primary.endpoint
    names = sb.db_names()
    name = f"db{1 + max(int(n[2:]) for n in names)}"
    first = sb.node(names[0])
    assert first.socket is not None
    node = Node(name=name, kind=MARIADB, port=free_port({n.port for n in sb.nodes.values()}),
                dir=sb.directory / name, server_id=sb.next_server_id(), socket=first.socket.parent / f"{name}.sock",
                up_role="replica")
    node.last_role = "replica"  # a restart must never open it for writes
    sandbox_mariadb.prepare(node, sandbox_mariadb.template())
    sb.nodes[name] = node
    sb.save()
    sb.restart(name)
    with sb.connect(name) as conn:
        sandbox_mariadb.create_users(conn, binlog=False)  # not binlogged: never errant
    steps = [f"{name}: started empty on port {node.port} with server id {node.server_id}"]
    say(steps[0])
    repl = sb.endpoints()["mariadb"]["replication_user"]
    steps += clone(donor_ep, sb.endpoint(name), primary.endpoint, admin, (repl["user"], repl["password"]),
                   progress=say)
    sb.save()
    return name, steps
