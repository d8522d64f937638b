"""scripts/install-gateway.sh under --root: what it installs, with which modes and owners, and that a rerun
changes nothing. Nothing outside the temporary root is touched (no useradd, no systemctl on this machine)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.sandbox.mosquitto import MOSQUITTO
from gateway.sandbox.ports import accepts_connections, free_port
from gateway.sandbox.process import start_process, stop_process, wait_until
from tests.sandbox.test_broker import Probe

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install-gateway.sh"
DB_PASSWORD = "writer-secret-123"
AS_ROOT = os.geteuid() == 0

pytestmark = pytest.mark.slow


def install(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the installer into ``root`` (its default Python: /usr/bin/python3 on Debian)."""
    return subprocess.run(["bash", str(SCRIPT), "--root", str(root), *args], capture_output=True, text=True,
                          timeout=timeout)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with type, mode, owner, content hash (files), target (links), mtime."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts or rel.parts[:3] == ("lib", "systemd", "system"):
            continue
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            found[str(rel)] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            found[str(rel)] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(rel)] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, digest, st.st_mtime_ns)
    return found


def fake_ids(root: Path, user: str = "iotgw") -> tuple[int, int]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"{user} not in {root}/etc/passwd")


@pytest.fixture(scope="module")
def pi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One installation with a MariaDB topology configured, over a Debian-like broker config."""
    base = tmp_path_factory.mktemp("install")
    root = base / "root"
    (root / "etc" / "mosquitto").mkdir(parents=True)
    # A machine with accounts already: id 100 is taken in passwd, 101 in group; dialout has a member.
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/bash\n_apt:x:100:65534::/nonexistent:/usr/sbin/nologin\n"
                                         "pi:x:1000:1000::/home/pi:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\ndialout:x:20:pi\nsystemd-journal:x:101:\npi:x:1000:\n")
    (root / "etc" / "mosquitto" / "mosquitto.conf").write_text("persistence true\ninclude_dir /etc/mosquitto/conf.d\n")
    password = base / "db-password"
    password.write_text(DB_PASSWORD + "\n")
    result = install(root, "--db-servers", "10.0.0.11:3306,10.0.0.12:3306", "--db-password-file", str(password),
                     "--client-id", "iotgw-pi1")
    assert result.returncode == 0, result.stdout + result.stderr
    return root, result


def test_help_and_bad_options(tmp_path: Path) -> None:
    helped = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0 and "--root DIR" in helped.stdout and "/etc/iotgw/gateway.toml" in helped.stdout
    unknown = subprocess.run(["bash", str(SCRIPT), "--frobnicate"], capture_output=True, text=True, timeout=30)
    assert unknown.returncode == 2 and "unknown option: --frobnicate" in unknown.stderr
    port = install(tmp_path / "r1", "--mqtt-port", "99999")
    assert port.returncode == 2 and "--mqtt-port" in port.stderr
    quote = install(tmp_path / "r2", "--mqtt-host", 'evil"host')
    assert quote.returncode == 2 and "invalid character" in quote.stderr
    # A database without its password is refused before anything is written.
    no_password = install(tmp_path / "r3", "--db-servers", "10.0.0.11:3306")
    assert no_password.returncode == 1 and "--db-password-file" in no_password.stderr
    assert list((tmp_path / "r3").iterdir()) == []
    missing = install(tmp_path / "r4", "--db-servers", "db:3306", "--db-password-file", str(tmp_path / "nope"))
    assert missing.returncode == 1 and f"cannot read {tmp_path / 'nope'}" in missing.stderr
    not_checkout = install(tmp_path / "r5", "--source", str(tmp_path))
    assert not_checkout.returncode == 1 and "not an iotgw checkout" in not_checkout.stderr


@pytest.mark.skipif(not AS_ROOT or shutil.which("runuser") is None, reason="needs root and runuser to act as another user")
def test_installing_on_the_machine_needs_root(tmp_path: Path) -> None:
    result = subprocess.run(["runuser", "-u", "nobody", "--", "bash", str(SCRIPT)], capture_output=True, text=True,
                            timeout=60, cwd="/")
    assert result.returncode == 1 and "installing on this machine needs root" in result.stderr


def test_service_user_in_the_roots_passwd(pi) -> None:
    root, _ = pi
    uid, gid = fake_ids(root)
    assert (uid, gid) == (102, 102)  # the first system id free in both files
    line = next(x for x in (root / "etc" / "passwd").read_text().splitlines() if x.startswith("iotgw:"))
    assert line.endswith(":/var/lib/iotgw:/usr/sbin/nologin")
    groups = {x.split(":")[0]: x.split(":")[3].split(",") for x in (root / "etc" / "group").read_text().splitlines()}
    assert groups["dialout"] == ["pi", "iotgw"] and groups["iotgw"] == [""]
    assert (root / "etc" / "passwd").read_text().startswith("root:x:0:0::/root:/bin/bash\n_apt:x:100:")


def test_secrets_are_0600_and_owned_by_the_service_user(pi) -> None:
    root, _ = pi
    uid, gid = fake_ids(root)
    db_pw, mqtt_pw = root / "etc/iotgw/db.pw", root / "etc/iotgw/mqtt.pw"
    assert db_pw.read_text().strip() == DB_PASSWORD
    assert len(mqtt_pw.read_text().strip()) >= 24  # generated
    for secret in (db_pw, mqtt_pw):
        st = secret.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600, secret
        if AS_ROOT:
            assert (st.st_uid, st.st_gid) == (uid, gid), secret
    state = (root / "var/lib/iotgw").stat()
    assert stat.S_IMODE(state.st_mode) == 0o750
    if AS_ROOT:
        assert (state.st_uid, state.st_gid) == (uid, gid)
    else:
        pytest.skip("not root: ownership is left as it is (checked only when the suite runs as root)")


def test_config_names_the_secret_files_and_passes_check_config(pi) -> None:
    root, _ = pi
    config_path = root / "etc/iotgw/gateway.toml"
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o644  # no secret in it
    config = tomllib.loads(config_path.read_text())
    assert config["database"] == {"kind": "mysql", "servers": ["10.0.0.11:3306", "10.0.0.12:3306"], "user": "iotgw",
                                  "password_file": "/etc/iotgw/db.pw"}
    assert config["mqtt"]["password_file"] == "/etc/iotgw/mqtt.pw" and config["mqtt"]["client_id"] == "iotgw-pi1"
    assert config["spool"]["path"] == "/var/lib/iotgw/spool.db"
    assert "password" not in config["database"] and "password" not in config["mqtt"]
    # The installed iotgw validates it, secrets read from the files (paths pointed into the root).
    checked = root.parent / "check.toml"
    checked.write_text(config_path.read_text().replace('"/etc/iotgw/', f'"{root}/etc/iotgw/'))
    iotgw = root / "opt/iotgw/.venv/bin/iotgw"
    result = subprocess.run([str(iotgw), "check-config", "--config", str(checked)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "MySQL/MariaDB 10.0.0.11:3306, 10.0.0.12:3306 as 'iotgw'" in result.stdout
    # ... and a missing secret is an error naming the file.
    (root.parent / "bad.toml").write_text(checked.read_text().replace("db.pw", "gone.pw"))
    bad = subprocess.run([str(iotgw), "check-config", "--config", str(root.parent / "bad.toml")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "database.password_file" in bad.stderr and "gone.pw" in bad.stderr


def test_venv_runs_the_installed_package(pi) -> None:
    root, _ = pi
    venv = root / "opt/iotgw/.venv"
    helped = subprocess.run([str(venv / "bin/iotgw"), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "check-config" in helped.stdout
    # The package lives in the venv (a copy), not as a link back to the checkout.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(venv / "bin/python"), "-c", "import gateway; print(gateway.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd="/", env=env)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    # The C hot paths were built from the copied source (this machine has their build dependencies).
    built = subprocess.run([str(venv / "bin/python"), "-c", "import gateway.native as n; "
                            "print(n.WHY_NOT + n.READING_WHY_NOT + n.PACKETS_WHY_NOT or 'all built')"],
                           capture_output=True, text=True, timeout=60, cwd="/", env=env)
    assert built.stdout.strip() == "all built", built.stdout + built.stderr
    assert "the gateway's C hot paths are built (gateway/native)" in pi[1].stdout


def test_unit_and_broker_config_come_from_deploy(pi) -> None:
    root, _ = pi
    unit = root / "etc/systemd/system/iotgw.service"
    assert unit.read_text() == (REPO / "deploy/iotgw.service").read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/iotgw.service"
    assert os.readlink(wants) == "/etc/systemd/system/iotgw.service"  # what `systemctl enable` makes
    conf = root / "etc/mosquitto/mosquitto.conf"
    assert conf.read_text() == (REPO / "deploy/mosquitto.conf").read_text()
    backup = root / "etc/mosquitto/mosquitto.conf.before-iotgw"
    assert backup.read_text() == "persistence true\ninclude_dir /etc/mosquitto/conf.d\n"


def test_the_devices_tls_listener_gets_its_ca_and_certificate(pi) -> None:
    """Mosquitto refuses to start while the device listener's certificate is missing: the installer makes it."""
    root, _ = pi
    conf = (root / "etc/mosquitto/mosquitto.conf").read_text()
    ca, cert, key = (root / _conf_value(conf, k).lstrip("/") for k in ("cafile", "certfile", "keyfile"))
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    check = subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(cert)], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def _conf_value(conf: str, key: str) -> str | None:
    values = [line.split()[1] for line in conf.splitlines() if line.split()[:1] == [key] and len(line.split()) > 1]
    return values[-1] if values else None


def test_the_gateways_account_works_on_a_broker_with_the_installed_files(pi, tmp_path: Path) -> None:
    root, _ = pi
    iotgw = root / "opt/iotgw/.venv/bin/iotgw"
    helped = subprocess.run([str(iotgw), "devices", "init", "--help"], capture_output=True, text=True, timeout=60)
    if helped.returncode != 0 or "--password-stdin" not in helped.stdout:
        pytest.skip("this version has no `iotgw devices init --password-stdin`: the broker's accounts are set by hand")
    conf = (root / "etc/mosquitto/mosquitto.conf").read_text()
    passwd, acl = _conf_value(conf, "password_file"), _conf_value(conf, "acl_file")
    if not passwd or not acl:
        pytest.skip("deploy/mosquitto.conf names no password_file and acl_file")
    # A real Mosquitto with exactly the installed account files (on a free loopback port, as root so it can read
    # them here; the installer makes them the mosquitto user's on a real machine).
    port = free_port(set())
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"user root\nlistener {port} 127.0.0.1\nallow_anonymous false\n"
                      f"password_file {root}{passwd}\nacl_file {root}{acl}\n")
    broker = start_process([MOSQUITTO, "-c", str(config)], tmp_path / "mosquitto.out", cwd=tmp_path)
    try:
        wait_until(lambda: accepts_connections(port), 30, what=f"mosquitto on {port} ({tmp_path / 'mosquitto.out'})")
        password = (root / "etc/iotgw/mqtt.pw").read_text().strip()
        for given, accepted in ((password, True), (password + "x", False)):
            probe = Probe()
            probe.client.username_pw_set("iotgw", given)
            try:
                assert probe.attempt(port) is accepted
            finally:
                probe.close()
    finally:
        stop_process(broker.pid, str(config))


def test_systemd_analyze_verifies_the_installed_unit(pi, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not found (Debian package: systemd)")
    root, _ = pi
    # verify --root resolves ExecStart= inside the root (the installed venv) and needs the system's targets
    # there too: a copy of this machine's units, outside what the installer manages.
    target = root / "lib/systemd/system"
    if not target.exists():
        shutil.copytree("/lib/systemd/system", target, symlinks=True)
    result = subprocess.run([analyze, f"--root={root}", "verify", "/etc/systemd/system/iotgw.service"],
                            capture_output=True, text=True, timeout=120)
    # verify exits 0 on some problems (an unknown setting is only warned about): no output at all is the pass.
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def test_shellcheck_finds_no_warnings() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not found (Debian package: shellcheck)")
    result = subprocess.run([shellcheck, "--severity=warning", str(SCRIPT)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout


def test_second_run_changes_nothing_and_repairs_drift(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = install(root, "--client-id", "iotgw-pi2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "done:" in first.stdout
    before = snapshot(root)
    second = install(root, "--client-id", "iotgw-pi2")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to change: already installed" in second.stdout
    assert snapshot(root) == before
    passwd, group = (root / "etc/passwd").read_text().splitlines(), (root / "etc/group").read_text().splitlines()
    assert [line.split(":")[0] for line in passwd] == ["iotgw"]
    assert sorted(line.split(":")[0] for line in group) == ["dialout", "iotgw"]

    # Drift: a broken unit and a loosened secret are put back; the user's config edits are kept.
    unit = root / "etc/systemd/system/iotgw.service"
    unit.write_text("[Service]\nExecStart=/bin/false\n")
    (root / "etc/iotgw/mqtt.pw").chmod(0o644)
    config = root / "etc/iotgw/gateway.toml"
    edited = config.read_text().replace('level = "info"', 'level = "debug"')
    config.write_text(edited)
    third = install(root, "--client-id", "iotgw-pi2")
    assert third.returncode == 0, third.stdout + third.stderr
    assert "wrote /etc/systemd/system/iotgw.service" in third.stdout
    assert "mode 600 on /etc/iotgw/mqtt.pw" in third.stdout
    assert "kept your /etc/iotgw/gateway.toml" in third.stdout
    assert unit.read_text() == (REPO / "deploy/iotgw.service").read_text()
    assert stat.S_IMODE((root / "etc/iotgw/mqtt.pw").stat().st_mode) == 0o600
    assert config.read_text() == edited


OVERLAY_RUN = r"""
set -eu
d="$1"; shift
mount -t overlay overlay -o "lowerdir=/,upperdir=$d/upper,workdir=$d/work" "$d/merged"
mount --bind /dev "$d/merged/dev"
mount --bind /proc "$d/merged/proc"
in_copy() { chroot "$d/merged" "$@"; }
set +e
in_copy bash "$SCRIPT" "$@" >"$d/first.out" 2>&1; echo $? >"$d/first.rc"
in_copy bash "$SCRIPT" "$@" >"$d/second.out" 2>&1; echo $? >"$d/second.rc"
in_copy id -u iotgw >"$d/uid" 2>&1
in_copy id -nG iotgw >"$d/groups" 2>&1
in_copy systemctl is-enabled iotgw.service >"$d/enabled" 2>&1
in_copy runuser -u iotgw -- cat /etc/iotgw/db.pw >"$d/as-iotgw" 2>&1; echo $? >"$d/as-iotgw.rc"
in_copy runuser -u nobody -- cat /etc/iotgw/db.pw >"$d/as-nobody" 2>&1; echo $? >"$d/as-nobody.rc"
if [ -n "${PRIVATE_PYTHON:-}" ]; then
    in_copy bash "$SCRIPT" --python "$PRIVATE_PYTHON" "$@" >"$d/private.out" 2>&1; echo $? >"$d/private.rc"
fi
"""


def _host_has_user(name: str) -> bool:
    return subprocess.run(["getent", "passwd", name], capture_output=True, timeout=30).returncode == 0


def test_real_install_in_a_throwaway_copy_of_this_machine(tmp_path: Path) -> None:
    """Without --root, in a private overlay of this machine's / (a mount namespace that ends with the test):
    useradd, usermod, systemctl enable and the check as the service user run for real, and nothing of it
    reaches this machine."""
    tools = [shutil.which(tool) for tool in ("unshare", "chroot", "runuser", "getent")]
    if not AS_ROOT or None in tools:
        pytest.skip("needs root and unshare, chroot, runuser, getent (util-linux, coreutils)")
    if _host_has_user("iotgw"):
        pytest.skip("this machine has an iotgw user already: the check that nothing leaks would be meaningless")
    for folder in ("upper", "work", "merged"):
        (tmp_path / folder).mkdir()
    probe = subprocess.run(["unshare", "--mount", "sh", "-c",
                            f"mount -t overlay overlay -o lowerdir=/,upperdir={tmp_path}/upper,"
                            f"workdir={tmp_path}/work {tmp_path}/merged"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount an overlay of / in a mount namespace here: {probe.stderr.strip()}")
    shutil.rmtree(tmp_path / "work")
    (tmp_path / "work").mkdir()
    password = tmp_path / "db-password"  # visible inside the copy at the same path (it is part of /)
    password.write_text(DB_PASSWORD + "\n")
    private = Path(sys.base_prefix).resolve()
    env = {**os.environ, "SCRIPT": str(SCRIPT)}
    if private.is_relative_to("/root"):  # a Python only root can run (pyenv): the installer must refuse it
        env["PRIVATE_PYTHON"] = str(private / "bin" / "python3")
    args = ["--db-servers", "10.0.0.11:3306", "--db-password-file", str(password), "--mqtt-user", "gw1"]
    run = subprocess.run(["unshare", "--mount", "bash", "-c", OVERLAY_RUN, "overlay", str(tmp_path), *args],
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr

    def out(name: str) -> str:
        return (tmp_path / name).read_text()

    assert out("first.rc").strip() == "0", out("first.out")
    assert "created the service user iotgw" in out("first.out")
    assert "config check: /etc/iotgw/gateway.toml OK" in out("first.out")
    assert out("second.rc").strip() == "0", out("second.out")
    assert "nothing to change: already installed" in out("second.out"), out("second.out")
    assert 100 <= int(out("uid")) < 1000  # a system account
    assert "dialout" in out("groups").split()
    assert out("enabled").strip() == "enabled"
    assert out("as-iotgw.rc").strip() == "0" and out("as-iotgw").strip() == DB_PASSWORD
    assert out("as-nobody.rc").strip() != "0" and "Permission denied" in out("as-nobody")
    if "PRIVATE_PYTHON" in env:
        assert out("private.rc").strip() == "1"
        assert "the service user iotgw cannot run" in out("private.out"), out("private.out")
    # Everything landed in the overlay's upper layer, nothing on this machine.
    assert "iotgw:" in (tmp_path / "upper/etc/passwd").read_text()
    assert (tmp_path / "upper/opt/iotgw/.venv/bin/iotgw").exists()
    assert not _host_has_user("iotgw") and not Path("/etc/iotgw").exists() and not Path("/opt/iotgw").exists()
