"""A throwaway certificate authority for the sandbox's TLS broker, made with the openssl command.

The openssl CLI rather than a Python library: it is already on every machine that runs the servers,
and the files it writes are exactly what Mosquitto and paho-mqtt read.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
_DAYS = "3650"


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA, server and client certificates and keys (PEM)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _san(host: str) -> str:
    try:
        ipaddress.ip_address(host)
        return f"IP:{host}"
    except ValueError:
        return f"DNS:{host}"


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {result.stderr.strip()}")


def _issue(directory: Path, name: str, subject: str, extensions: str) -> None:
    """Make ``name.key``/``name.crt`` signed by the CA in ``directory``."""
    (directory / f"{name}.ext").write_text(extensions)
    _openssl("req", *_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=directory)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", f"{name}.crt", "-days", _DAYS, "-sha256", "-extfile", f"{name}.ext", cwd=directory,
    )  # fmt: skip


def make_certificates(directory: Path, hosts: Sequence[str] = ()) -> TlsFiles:
    """Create a CA, a server certificate for 127.0.0.1/localhost (and ``hosts``: names or IP addresses the
    devices connect to) and a client certificate in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", *_KEY, "-keyout", "ca.key", "-out", "ca.crt", "-days", _DAYS, "-sha256",
        "-subj", "/CN=iotgw sandbox CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _issue(
        directory,
        "server",
        "/CN=127.0.0.1",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=" + ",".join(_san(h) for h in ("127.0.0.1", "localhost", *hosts))
        + "\n",
    )
    _issue(
        directory,
        "client",
        "/CN=iotgw",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    return files(directory)


def files(directory: Path) -> TlsFiles:
    """The file layout :func:`make_certificates` writes."""
    return TlsFiles(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )
