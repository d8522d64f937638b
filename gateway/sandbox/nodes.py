"""What the sandbox knows about one server: the record kept in the state file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MARIADB = "mariadb"
MOSQUITTO = "mosquitto"


@dataclass
class Node:
    """One server of a sandbox. ``name`` never changes, whatever role the server has later."""

    name: str
    kind: str  # MARIADB or MOSQUITTO
    port: int
    dir: Path  # the node's own folder: config, data, logs
    host: str = "127.0.0.1"
    pid: int | None = None
    server_id: int | None = None  # MariaDB only; unique, never reused within a sandbox
    socket: Path | None = None  # MariaDB only
    tls_port: int | None = None  # Mosquitto with TLS: the TLS listener (the only one)
    up_role: str | None = None  # the role `up` gave it: primary, replica, standalone, broker
    last_role: str | None = None  # the last role read live before a fault was injected (decides restart)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        """The generated config file; its path is also the marker checked in /proc/PID/cmdline."""
        return self.dir / ("my.cnf" if self.kind == MARIADB else "mosquitto.conf")

    @property
    def datadir(self) -> Path:
        return self.dir / "data"

    @property
    def tmpdir(self) -> Path:
        return self.dir / "tmp"

    @property
    def log(self) -> Path:
        """The server's own log (MariaDB error log, Mosquitto log file)."""
        return self.dir / ("error.log" if self.kind == MARIADB else "mosquitto.log")

    @property
    def out_log(self) -> Path:
        """stdout/stderr of the process (early startup failures land here)."""
        return self.dir / "process.out"

    @property
    def marker(self) -> str:
        return str(self.config)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["dir"] = str(self.dir)
        data["socket"] = str(self.socket) if self.socket else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Node:
        data = dict(data)
        data["dir"] = Path(data["dir"])
        data["socket"] = Path(data["socket"]) if data.get("socket") else None
        return cls(**data)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
