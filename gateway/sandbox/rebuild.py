"""`iotgw sandbox rebuild NODE`: a sandbox server rebuilt as an empty replica with a new server id, then cloned.

Built on the Sandbox's public API (`Sandbox.load`, `sb.nodes`, `next_server_id`, `save`, `restart`, the
`mariadb` helpers) and on `gateway.ops.clone`. A rebuilt server never reuses its old server id (the field
notes: GTIDs of the old id would be mistaken for its new writes).
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.ops.clone import clone
from gateway.sandbox import Sandbox, SandboxError
from gateway.sandbox import mariadb as sandbox_mariadb
from gateway.topology import analysis
from gateway.topology.conn import Credentials
from gateway.topology.discovery import discover


def sandbox_admin(sb: Sandbox) -> Credentials:
    return Credentials("root", sb.endpoints()["mariadb"]["users"].get("root", ""), connect_timeout=2, io_timeout=30)


def rebuild_node(sb: Sandbox, name: str, donor: str | None = None,
                 progress: Callable[[str], None] | None = None) -> list[str]:
    """Wipe `name`, start it empty with a new server id, clone a healthy replica's data onto it, replicate."""
    say = progress or (lambda _m: None)
    admin = sandbox_admin(sb)
    node = sb.node(name)
    others = [n for n in sb.db_names() if n != name and sb.is_alive(n) and not sb.is_frozen(n)]
    snap = discover([sb.endpoint(n) for n in others], admin.with_timeouts(connect=1, io=3))
    primary = analysis.writer_primary(snap).primary
    if primary is None:
        raise SandboxError("no primary to replicate from: fail over first")
    if primary.endpoint == sb.endpoint(name):
        raise SandboxError(f"{name} is the primary: switch over first")
    if donor is not None:
        donor_ep = sb.endpoint(donor)
    else:
        healthy = [h.server for h in analysis.healthy_replicas(snap, primary) if not h.server.blackhole]
        donor_ep = healthy[0].endpoint if healthy else primary.endpoint
    if sb.is_alive(name):
        if sb.is_frozen(name):
            sb.thaw(name)
        sb.kill(name)
        say(f"{name}: stopped (SIGKILL)")
    old_id = node.server_id
    node.server_id = sb.next_server_id()
    sandbox_mariadb.prepare(node, sandbox_mariadb.template())  # fresh data folder and config with the new id
    node.last_role = "replica"  # restart must not reopen writes on it
    sb.save()
    sb.restart(name)
    with sb.connect(name) as conn:
        sandbox_mariadb.create_users(conn, binlog=False)
    steps = [f"{name}: wiped and restarted empty with server id {node.server_id} (was {old_id})"]
    say(steps[0])
    repl = sb.endpoints()["mariadb"]["replication_user"]
    steps += clone(donor_ep, sb.endpoint(name), primary.endpoint, admin, (repl["user"], repl["password"]),
                   progress=say)
    node.last_role = "replica"
    sb.save()
    return steps
