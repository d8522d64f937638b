"""Device accounts on the broker: Mosquitto's password file and ACL file, owned by the gateway.

Each device gets its own user name and password, and the ACL lets device D publish only on
`P/<site>/D/reading` and `P/<site>/D/status` and subscribe only to `P/<site>/D/ack`: a device speaks only for
itself and cannot trim another device's cache with a forged ack. The gateway's own account reads readings and
statuses (and the broker's `$SYS` counters) and writes acks. See docs/security.md.

The ACL file is generated whole from the registry kept in its own comment lines (`# device NAME site SITE`),
so the two files cannot drift apart. Passwords are hashed here (PBKDF2-SHA512, Mosquitto's `$7$` format, read
by Mosquitto 2.0) rather than with `mosquitto_passwd -b`, which would put the password on a command line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gateway.protocol import valid_name

PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes; the count is stored in each line
SALT_BYTES = 12
HEADER = "# Written by `iotgw devices`: edits by hand are overwritten. See docs/security.md."


class DeviceError(ValueError):
    """A device command that cannot be done, with the reason (unknown device, bad name, unreadable file)."""


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto's `$7$` password hash: `$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>`."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, hashed: str) -> bool:
    """True if `password` matches a `$7$` hash."""
    try:
        _empty, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        want = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(want, got)


def new_password() -> str:
    """A random password for a device (about 144 bits, URL-safe characters)."""
    return secrets.token_urlsafe(18)


@dataclass(frozen=True)
class Device:
    name: str
    site: str


class DeviceFiles:
    """The broker's password file and ACL file for one topic prefix, read and written together."""

    def __init__(self, passwd_path: str | os.PathLike[str], acl_path: str | os.PathLike[str], prefix: str = "iot") -> None:
        self.passwd_path, self.acl_path, self.prefix = Path(passwd_path), Path(acl_path), prefix
        self.gateway_user: str | None = None
        self.devices: dict[str, Device] = {}
        self.hashes: dict[str, str] = {}
        self._load()

    # --- reading ---------------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            passwd = self.passwd_path.read_text() if self.passwd_path.exists() else ""
            acl = self.acl_path.read_text() if self.acl_path.exists() else ""
        except OSError as exc:
            raise DeviceError(f"{exc.filename}: cannot read: {exc.strerror}") from None
        for line in passwd.splitlines():
            user, sep, hashed = line.partition(":")
            if sep and user and not line.startswith("#"):
                self.hashes[user] = hashed
        for line in acl.splitlines():
            words = line.split()
            if words[:2] == ["#", "gateway"] and len(words) == 3:
                self.gateway_user = words[2]
            elif words[:2] == ["#", "device"] and len(words) == 5 and words[3] == "site":
                self.devices[words[2]] = Device(words[2], words[4])

    # --- changes ---------------------------------------------------------------------------------
    def set_gateway(self, user: str, password: str) -> None:
        """Create or replace the gateway's account."""
        _check_name(user, "gateway user")
        if user in self.devices:
            raise DeviceError(f"{user!r} is a device; the gateway needs an account of its own")
        if self.gateway_user and self.gateway_user != user:
            self.hashes.pop(self.gateway_user, None)
        self.gateway_user = user
        self.hashes[user] = hash_password(password)

    def add(self, name: str, site: str, password: str) -> None:
        _check_name(name, "device")
        _check_name(site, "site")
        if name in self.devices:
            raise DeviceError(f"device {name!r} exists already (site {self.devices[name].site}); "
                              "use `iotgw devices passwd` for a new password")
        if name == self.gateway_user:
            raise DeviceError(f"{name!r} is the gateway's account")
        self.devices[name] = Device(name, site)
        self.hashes[name] = hash_password(password)

    def remove(self, name: str) -> None:
        if name not in self.devices:
            raise DeviceError(f"no device {name!r} in {self.acl_path}")
        del self.devices[name]
        self.hashes.pop(name, None)

    def passwd(self, name: str, password: str) -> None:
        if name not in self.devices and name != self.gateway_user:
            raise DeviceError(f"no device {name!r} in {self.acl_path}")
        self.hashes[name] = hash_password(password)

    # --- writing ---------------------------------------------------------------------------------
    def acl_text(self) -> str:
        """The whole ACL file: the gateway's rights, then one block per device (sorted)."""
        p = self.prefix
        lines = [HEADER, ""]
        if self.gateway_user:
            lines += [f"# gateway {self.gateway_user}", f"user {self.gateway_user}",
                      f"topic read {p}/+/+/reading", f"topic read {p}/+/+/status", f"topic write {p}/+/+/ack",
                      "topic read $SYS/#", ""]
        for dev in sorted(self.devices.values(), key=lambda d: d.name):
            base = f"{p}/{dev.site}/{dev.name}"
            lines += [f"# device {dev.name} site {dev.site}", f"user {dev.name}", f"topic write {base}/reading",
                      f"topic write {base}/status", f"topic read {base}/ack", ""]
        return "\n".join(lines)

    def passwd_text(self) -> str:
        users = ([self.gateway_user] if self.gateway_user else []) + sorted(self.devices)
        return "".join(f"{u}:{self.hashes[u]}\n" for u in users if u in self.hashes)

    def save(self) -> None:
        """Write both files atomically (password file first), readable by owner and group only."""
        _write_atomic(self.passwd_path, self.passwd_text())
        _write_atomic(self.acl_path, self.acl_text())


def _check_name(name: str, what: str) -> None:
    kind = "site" if what == "site" else "dev"
    if not valid_name(name, kind):
        raise DeviceError(f"{what} name {name!r}: use letters, digits, '_' and '-' (at most 32 characters)")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = path.stat()
        mode, owner = st.st_mode & 0o777, (st.st_uid, st.st_gid)
    except FileNotFoundError:
        mode, owner = 0o640, None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode & 0o660)  # never world-readable: the hashes are offline-guessable
        if owner is not None and os.geteuid() == 0:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
