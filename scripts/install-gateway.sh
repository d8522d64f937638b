#!/usr/bin/env bash
# Install the iotgw gateway on a Debian machine (a Raspberry Pi) in one command. See docs/deployment.md.
#
# Idempotent: every step compares what is there with what it would write and changes only the difference;
# a second run with the same options changes nothing and says so.
set -euo pipefail
umask 022  # the venv and config must be readable by the service user, whatever root's umask is

usage() {
    cat <<'EOF'
Usage: scripts/install-gateway.sh [OPTIONS]

Installs the iotgw gateway from this checkout:
  - the service user `iotgw` (system account, no login, member of `dialout` for USB collectors)
  - a virtual environment /opt/iotgw/.venv with this package in it (`/opt/iotgw/.venv/bin/iotgw`), its
    hot paths built in C (gateway/native) when gcc, python3-dev and libsqlite3-dev are there (installed if
    missing and apt-get can; without them the gateway runs their Python versions, at more CPU per reading)
  - /etc/iotgw/gateway.toml (written only if absent: a rerun keeps your edits), with the secrets in
    0600 files owned by iotgw: /etc/iotgw/mqtt.pw (generated) and /etc/iotgw/db.pw (--db-password-file)
  - the systemd unit /etc/systemd/system/iotgw.service (deploy/iotgw.service), enabled
  - the broker's configuration /etc/mosquitto/mosquitto.conf (deploy/mosquitto.conf; the previous file is
    kept once as mosquitto.conf.before-iotgw), and the devices' TLS CA and certificate if missing.
    Device accounts and the ACL: `iotgw devices`.
Run it again after `git pull` to upgrade: only what changed is replaced, then the services restart.

Options:
  --root DIR              install under DIR instead of / (tests, inspection): runs no useradd, apt-get or
                          systemctl against this machine; the service user goes into DIR/etc/passwd and
                          DIR/etc/group; the unit is enabled with `systemctl --root DIR` (symlinks only)
  --source DIR            the iotgw checkout to install [default: the checkout holding this script]
  --python PY             the Python (3.11 or newer) for the virtual environment; the service user must be
                          able to run it [default: /usr/bin/python3, or python3 on the PATH]
  --mqtt-host HOST        the broker [default: localhost]
  --mqtt-port PORT        [default: 1883]
  --mqtt-user NAME        the gateway's broker account [default: iotgw]
  --client-id ID          the gateway's MQTT client id, unique per gateway [default: iotgw-<hostname>]
  --db-servers LIST       HOST:PORT,HOST:PORT,... of the MariaDB/MySQL topology [default: none, a local
                          SQLite file /var/lib/iotgw/readings.db]
  --db-user NAME          the writer account [default: iotgw]
  --db-password-file F    a file holding the writer's password; copied to /etc/iotgw/db.pw (0600).
                          Needed with --db-servers unless /etc/iotgw/db.pw exists already
  --no-broker             do not install the Mosquitto configuration (the broker runs elsewhere)
  --pip-args ARGS         extra arguments for pip, e.g. "--no-index --find-links /media/wheels" offline
  -h, --help              this text

Exit status: 0 installed (or nothing to change), 1 an error (the message names the cause), 2 a bad option.
EOF
}

die() { echo "install-gateway: error: $*" >&2; exit 1; }
bad_option() { echo "install-gateway: $*" >&2; echo "Try --help." >&2; exit 2; }
say() { echo "install-gateway: $*"; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT=""
SOURCE="$(dirname "$HERE")"
PYTHON=""
MQTT_HOST="localhost"
MQTT_PORT="1883"
MQTT_USER="iotgw"
CLIENT_ID="iotgw-$(hostname -s 2>/dev/null || echo gateway)"
DB_SERVERS=""
DB_USER="iotgw"
DB_PASSWORD_FILE=""
BROKER=1
PIP_ARGS=""
SERVICE_USER="iotgw"

need_value() { [ $# -ge 2 ] && [ -n "$2" ] || bad_option "$1 needs a value"; }
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --root) need_value "$@"; ROOT="$2"; shift 2 ;;
        --source) need_value "$@"; SOURCE="$2"; shift 2 ;;
        --python) need_value "$@"; PYTHON="$2"; shift 2 ;;
        --mqtt-host) need_value "$@"; MQTT_HOST="$2"; shift 2 ;;
        --mqtt-port) need_value "$@"; MQTT_PORT="$2"; shift 2 ;;
        --mqtt-user) need_value "$@"; MQTT_USER="$2"; shift 2 ;;
        --client-id) need_value "$@"; CLIENT_ID="$2"; shift 2 ;;
        --db-servers) need_value "$@"; DB_SERVERS="$2"; shift 2 ;;
        --db-user) need_value "$@"; DB_USER="$2"; shift 2 ;;
        --db-password-file) need_value "$@"; DB_PASSWORD_FILE="$2"; shift 2 ;;
        --no-broker) BROKER=0; shift ;;
        --pip-args) need_value "$@"; PIP_ARGS="$2"; shift 2 ;;
        *) bad_option "unknown option: $1" ;;
    esac
done

# ------------------------------------------------------------------------------------------------ checks
[[ "$MQTT_PORT" =~ ^[0-9]+$ ]] && [ "$MQTT_PORT" -ge 1 ] && [ "$MQTT_PORT" -le 65535 ] \
    || bad_option "--mqtt-port: expected a TCP port (1-65535), got '$MQTT_PORT'"
SAFE='^[][A-Za-z0-9._:,@-]*$'
for value in "$MQTT_HOST" "$MQTT_USER" "$CLIENT_ID" "$DB_SERVERS" "$DB_USER"; do
    # These go into TOML strings: refuse what would need escaping instead of escaping it.
    [[ "$value" =~ $SAFE ]] || bad_option "invalid character in '$value' (letters, digits and . _ : , @ [ ] - only)"
done
if [ -n "$DB_SERVERS" ]; then
    IFS=',' read -r -a servers <<<"$DB_SERVERS"
    for server in "${servers[@]}"; do
        [[ "$server" =~ ^.+:[0-9]+$ ]] || bad_option "--db-servers: expected HOST:PORT, got '$server'"
    done
fi
if [ -n "$DB_PASSWORD_FILE" ]; then
    [ -r "$DB_PASSWORD_FILE" ] || die "--db-password-file: cannot read $DB_PASSWORD_FILE"
    [ -s "$DB_PASSWORD_FILE" ] || die "--db-password-file: $DB_PASSWORD_FILE is empty"
fi
if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT" || die "--root: cannot create $ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
    [ "$ROOT" != "/" ] || bad_option "--root /: leave --root out to install on this machine"
elif [ "$(id -u)" != 0 ]; then
    die "installing on this machine needs root (sudo $0 …), or give --root DIR to install into a folder"
fi
SOURCE="$(cd "$SOURCE" 2>/dev/null && pwd)" || die "--source: no such folder"
if [ -z "$PYTHON" ]; then
    # The system's Python, not one in root's home (pyenv and the like): the service user runs the venv's
    # python, which points at this interpreter.
    if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
for file in pyproject.toml gateway/cli/__init__.py deploy/iotgw.service deploy/mosquitto.conf; do
    [ -f "$SOURCE/$file" ] || die "--source $SOURCE: not an iotgw checkout ($file missing)"
done

ETC="$ROOT/etc/iotgw"
OPT="$ROOT/opt/iotgw"
VENV="$OPT/.venv"
STATE="$ROOT/var/lib/iotgw"
UNIT="$ROOT/etc/systemd/system/iotgw.service"
MOSQUITTO_CONF="$ROOT/etc/mosquitto/mosquitto.conf"
CONFIG="$ETC/gateway.toml"
if [ -n "$DB_SERVERS" ] && [ -z "$DB_PASSWORD_FILE" ] && [ ! -s "$ETC/db.pw" ]; then
    die "--db-servers needs --db-password-file FILE (the writer account's password, copied to /etc/iotgw/db.pw)"
fi
AS_ROOT=0
[ "$(id -u)" = 0 ] && AS_ROOT=1
CHANGES=0
changed() { CHANGES=$((CHANGES + 1)); say "$*"; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# ----------------------------------------------------------------------------------- system packages
if [ -z "$ROOT" ]; then
    missing=()
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    if [ "$BROKER" = 1 ] && ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
        missing+=(mosquitto)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null \
            || die "apt-get install ${missing[*]} failed (run 'apt-get update' first?)"
        changed "installed Debian packages: ${missing[*]}"
    fi
    # What pip needs to build gateway/native: optional (without it the Python versions run), so a failure here
    # (an offline Pi) is a note, not the end of the install.
    optional=()
    for pkg in gcc python3-dev libsqlite3-dev; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || optional+=("$pkg")
    done
    if [ ${#optional[@]} -gt 0 ]; then
        if DEBIAN_FRONTEND=noninteractive apt-get install -y "${optional[@]}" >/dev/null 2>&1; then
            changed "installed Debian packages: ${optional[*]} (to build the gateway's C hot paths)"
        else
            say "note: apt-get install ${optional[*]} failed: the gateway's C hot paths will not be built"
        fi
    fi
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "--python $PYTHON: Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1 || echo none))"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
    || die "$PYTHON cannot create virtual environments: install python3-venv (apt-get install python3-venv)"
PYTHON_REAL="$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.executable))')"

# ---------------------------------------------------------------------------------------- service user
# Under --root the account lives in DIR/etc/passwd and DIR/etc/group (nothing on this machine changes);
# files are then owned by its numeric ids when we run as root.
fake_add_user() {
    local passwd="$ROOT/etc/passwd" group="$ROOT/etc/group" id
    mkdir -p "$ROOT/etc"
    [ -e "$passwd" ] || : >"$passwd"
    [ -e "$group" ] || : >"$group"
    if ! grep -q "^$SERVICE_USER:" "$passwd"; then
        id=100  # the first free system id (Debian: 100-999) in both files
        while cut -d: -f3 "$passwd" "$group" | grep -qx "$id"; do id=$((id + 1)); done
        echo "$SERVICE_USER:x:$id:$id:iotgw gateway:/var/lib/iotgw:/usr/sbin/nologin" >>"$passwd"
        grep -q "^$SERVICE_USER:" "$group" || echo "$SERVICE_USER:x:$id:" >>"$group"
        changed "created the service user $SERVICE_USER (uid $id) in $passwd"
    fi
    if ! grep -q "^dialout:" "$group"; then
        echo "dialout:x:20:$SERVICE_USER" >>"$group"
        changed "added $SERVICE_USER to group dialout in $group"
    elif ! grep "^dialout:" "$group" | cut -d: -f4 | tr ',' '\n' | grep -qx "$SERVICE_USER"; then
        sed -i "/^dialout:/{s/:\$/:$SERVICE_USER/;t;s/\$/,$SERVICE_USER/}" "$group"
        changed "added $SERVICE_USER to group dialout in $group"
    fi
    USER_UID="$(grep "^$SERVICE_USER:" "$passwd" | cut -d: -f3)"
    USER_GID="$(grep "^$SERVICE_USER:" "$passwd" | cut -d: -f4)"
}

real_add_user() {
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        useradd --system --user-group --home-dir /var/lib/iotgw --no-create-home \
            --shell /usr/sbin/nologin --comment "iotgw gateway" "$SERVICE_USER" \
            || die "useradd $SERVICE_USER failed"
        changed "created the service user $SERVICE_USER"
    fi
    if getent group dialout >/dev/null && ! id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx dialout; then
        usermod -aG dialout "$SERVICE_USER" || die "usermod -aG dialout $SERVICE_USER failed"
        changed "added $SERVICE_USER to group dialout (serial ports)"
    fi
    USER_UID="$(id -u "$SERVICE_USER")"
    USER_GID="$(id -g "$SERVICE_USER")"
}

if [ -n "$ROOT" ]; then fake_add_user; else real_add_user; fi
if [ -z "$ROOT" ] && ! runuser -u "$SERVICE_USER" -- "$PYTHON_REAL" -c '' 2>/dev/null; then
    die "the service user $SERVICE_USER cannot run $PYTHON_REAL (a Python in a private folder?): give --python /usr/bin/python3"
fi

# ------------------------------------------------------------------------------ files: only the difference
# ensure_owner PATH UID GID MODE: set what differs (ownership only when running as root).
ensure_owner() {
    local path="$1" uid="$2" gid="$3" mode="$4"
    if [ "$(stat -c %a "$path")" != "$mode" ]; then
        chmod "$mode" "$path"
        changed "mode $mode on ${path#"$ROOT"}"
    fi
    if [ "$AS_ROOT" = 1 ] && [ "$(stat -c %u:%g "$path")" != "$uid:$gid" ]; then
        chown "$uid:$gid" "$path"
        changed "owner $uid:$gid on ${path#"$ROOT"}"
    fi
}

ensure_dir() {  # PATH UID GID MODE
    if [ ! -d "$1" ]; then
        mkdir -p "$1"
        changed "created ${1#"$ROOT"}/"
    fi
    ensure_owner "$@"
}

# install_file SRC DEST UID GID MODE: replace DEST atomically if its content differs. The temporary copy
# gets its mode before it holds the content, so a secret is never readable by others, not even briefly.
install_file() {
    local src="$1" dest="$2"
    if [ ! -f "$dest" ] || ! cmp -s "$src" "$dest"; then
        local tmp
        tmp="$(dirname "$dest")/.$(basename "$dest").iotgw-install"
        (umask 077 && : >"$tmp")
        chmod "$5" "$tmp"
        cat "$src" >"$tmp"
        mv -f "$tmp" "$dest"
        changed "wrote ${dest#"$ROOT"}"
    fi
    ensure_owner "$dest" "$3" "$4" "$5"
}

ensure_dir "$ETC" 0 0 755
ensure_dir "$OPT" 0 0 755
ensure_dir "$STATE" "$USER_UID" "$USER_GID" 750

# ------------------------------------------------------------------------------------------------ secrets
MQTT_PW="$ETC/mqtt.pw"
if [ ! -s "$MQTT_PW" ]; then
    "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$WORK/mqtt.pw"
    install_file "$WORK/mqtt.pw" "$MQTT_PW" "$USER_UID" "$USER_GID" 600
else
    ensure_owner "$MQTT_PW" "$USER_UID" "$USER_GID" 600
fi
DB_PW="$ETC/db.pw"
if [ -n "$DB_PASSWORD_FILE" ]; then
    install_file "$DB_PASSWORD_FILE" "$DB_PW" "$USER_UID" "$USER_GID" 600
elif [ -n "$DB_SERVERS" ]; then
    ensure_owner "$DB_PW" "$USER_UID" "$USER_GID" 600
fi

# ----------------------------------------------------------------------------------------- gateway.toml
{
    echo "# Written by scripts/install-gateway.sh; every key is in docs/configuration.md."
    echo "# A rerun of the installer keeps this file: edit it freely, then: systemctl restart iotgw"
    echo "[mqtt]"
    echo "host = \"$MQTT_HOST\""
    echo "port = $MQTT_PORT"
    echo "client_id = \"$CLIENT_ID\"   # unique per gateway: the broker keeps this client's session"
    echo "username = \"$MQTT_USER\""
    echo "password_file = \"/etc/iotgw/mqtt.pw\""
    echo
    echo "[spool]"
    echo "path = \"/var/lib/iotgw/spool.db\""
    echo
    echo "[database]"
    if [ -n "$DB_SERVERS" ]; then
        echo "kind = \"mysql\""
        printf 'servers = [%s]\n' "$(echo "$DB_SERVERS" | sed 's/[^,][^,]*/"&"/g; s/,/, /g')"
        echo "user = \"$DB_USER\""
        echo "password_file = \"/etc/iotgw/db.pw\""
    else
        echo "kind = \"sqlite\""
        echo "sqlite_path = \"/var/lib/iotgw/readings.db\""
    fi
    echo
    echo "[http]"
    echo "listen = \"127.0.0.1:9108\"   # /metrics and /healthz"
    echo
    echo "[log]"
    echo "level = \"info\""
} >"$WORK/gateway.toml"
if [ -f "$CONFIG" ]; then
    if ! cmp -s "$WORK/gateway.toml" "$CONFIG"; then
        say "kept your ${CONFIG#"$ROOT"} (it differs from what these options would write; remove it to regenerate)"
    fi
    ensure_owner "$CONFIG" 0 0 644
else
    install_file "$WORK/gateway.toml" "$CONFIG" 0 0 644  # no secrets in it: those are in the 0600 files
fi

# --------------------------------------------------------------------------------- virtual environment
# The package is installed from a copy of the checkout (pip's build would write build/ into the checkout),
# and only when the source differs from what was installed last (the fingerprint in the venv).
fingerprint() {
    (cd "$SOURCE" && find pyproject.toml setup.py README.md gateway -type f ! -path '*/__pycache__/*' \
        ! -name '*.pyc' ! -name '*.so' \
        -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}
SOURCE_HASH="$(fingerprint)"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" || die "$PYTHON -m venv $VENV failed"
    changed "created the virtual environment ${VENV#"$ROOT"}"
fi
if [ "$(cat "$VENV/.iotgw-source" 2>/dev/null)" != "$SOURCE_HASH" ] || [ ! -x "$VENV/bin/iotgw" ]; then
    mkdir "$WORK/src"
    cp -r "$SOURCE/pyproject.toml" "$SOURCE/setup.py" "$SOURCE/README.md" "$SOURCE/gateway" "$WORK/src/"
    find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
    find "$WORK/src" -name '*.so' -delete  # a checkout's own build: pip builds gateway/native afresh
    # shellcheck disable=SC2086 # PIP_ARGS is a list of words on purpose
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PIP_ARGS "$WORK/src" >"$WORK/pip.log" 2>&1 \
        || { cat "$WORK/pip.log" >&2; die "pip install of $SOURCE into ${VENV#"$ROOT"} failed (output above)"; }
    echo "$SOURCE_HASH" >"$VENV/.iotgw-source"
    changed "installed iotgw from $SOURCE into ${VENV#"$ROOT"}"
    # gateway/native is optional (built with gcc, python3-dev and libsqlite3-dev): say which paths run in C.
    native="$("$VENV/bin/python" -c 'import gateway.native as n
print("; ".join(f"{name} {why}" for name, why in (("drain reader", n.WHY_NOT), ("reading parser", n.READING_WHY_NOT),
      ("packet splitter", n.PACKETS_WHY_NOT)) if why))' 2>&1)"
    if [ -z "$native" ]; then
        say "the gateway's C hot paths are built (gateway/native)"
    else
        say "note: not every C hot path is built ($native): their Python versions run (more CPU per reading)." \
            "Install gcc python3-dev libsqlite3-dev and run this again to build them."
    fi
fi
"$VENV/bin/iotgw" --help >/dev/null || die "${VENV#"$ROOT"}/bin/iotgw --help fails after installing"

# --------------------------------------------------------------------------------------- systemd unit
mkdir -p "$(dirname "$UNIT")"
install_file "$SOURCE/deploy/iotgw.service" "$UNIT" 0 0 644
if [ -n "$ROOT" ]; then SYSTEMCTL=(systemctl "--root=$ROOT"); else SYSTEMCTL=(systemctl); fi
SYSTEMD_RUNNING=0  # systemd is PID 1 (not in a container or chroot): reload and restart services
[ -z "$ROOT" ] && [ -d /run/systemd/system ] && SYSTEMD_RUNNING=1
if command -v systemctl >/dev/null; then
    if [ "$SYSTEMD_RUNNING" = 1 ]; then systemctl daemon-reload || die "systemctl daemon-reload failed"; fi
    if [ "$("${SYSTEMCTL[@]}" is-enabled iotgw.service 2>/dev/null)" != enabled ]; then
        "${SYSTEMCTL[@]}" enable --quiet iotgw.service || die "systemctl enable iotgw.service failed"
        changed "enabled iotgw.service"
    fi
else
    say "systemctl not found: enable the unit yourself (systemctl enable --now iotgw)"
fi

# ---------------------------------------------------------------------------------------------- broker
BROKER_CHANGES=0
if [ "$BROKER" = 1 ]; then
    # deploy/mosquitto.conf is a whole broker configuration (it sets persistence_location, which Debian's
    # own mosquitto.conf sets too, and Mosquitto refuses a duplicate): it replaces the main file.
    mkdir -p "$(dirname "$MOSQUITTO_CONF")"
    before=$CHANGES
    if [ -f "$MOSQUITTO_CONF" ] && ! cmp -s "$SOURCE/deploy/mosquitto.conf" "$MOSQUITTO_CONF" \
        && [ ! -e "$MOSQUITTO_CONF.before-iotgw" ]; then
        cp -p "$MOSQUITTO_CONF" "$MOSQUITTO_CONF.before-iotgw"
        changed "kept the previous broker config as ${MOSQUITTO_CONF#"$ROOT"}.before-iotgw"
    fi
    install_file "$SOURCE/deploy/mosquitto.conf" "$MOSQUITTO_CONF" 0 0 644
    BROKER_CHANGES=$((CHANGES - before))
fi

# ------------------------------------------------------------------------- the gateway's broker account
# The broker config names its password and ACL files; `iotgw devices` maintains their content
# (docs/security.md). The gateway's own account is created there once, with the password of
# /etc/iotgw/mqtt.pw; devices are added with `iotgw devices add`. Skipped when the config names no such
# files or this version of iotgw has no `devices` command.
GATEWAY_ACCOUNT=0
conf_value() {  # the last value of a Mosquitto setting in the installed broker config
    sed -n "s/^[[:space:]]*$1[[:space:]][[:space:]]*\([^[:space:]#][^[:space:]#]*\).*/\1/p" "$MOSQUITTO_CONF" | tail -1
}
if [ "$BROKER" = 1 ]; then
    PASSWD_FILE="$(conf_value password_file)"
    ACL_FILE="$(conf_value acl_file)"
    if [ -n "$PASSWD_FILE" ] && [ -n "$ACL_FILE" ] \
        && "$VENV/bin/iotgw" devices init --help 2>/dev/null | grep -q -- --password-stdin; then
        GATEWAY_ACCOUNT=1
        before=$CHANGES
        if ! grep -q "^$MQTT_USER:" "$ROOT$PASSWD_FILE" 2>/dev/null; then
            mkdir -p "$(dirname "$ROOT$PASSWD_FILE")" "$(dirname "$ROOT$ACL_FILE")"
            "$VENV/bin/iotgw" devices init --passwd-file "$ROOT$PASSWD_FILE" --acl-file "$ROOT$ACL_FILE" \
                --gateway-user "$MQTT_USER" --password-stdin <"$MQTT_PW" >"$WORK/devices.out" 2>&1 \
                || { cat "$WORK/devices.out" >&2; die "iotgw devices init (the gateway's broker account) failed"; }
            changed "gave the broker the gateway's account $MQTT_USER ($PASSWD_FILE, $ACL_FILE)"
        fi
        # Mosquitto drops root and reads these as its own user.
        if [ -z "$ROOT" ] && getent passwd mosquitto >/dev/null; then
            for file in "$PASSWD_FILE" "$ACL_FILE"; do
                ensure_owner "$file" "$(id -u mosquitto)" "$(id -g mosquitto)" "$(stat -c %a "$file")"
            done
        fi
        BROKER_CHANGES=$((BROKER_CHANGES + CHANGES - before))
    fi
fi

# ------------------------------------------------------------------------ the devices' TLS listener
# The broker config's device listener needs its CA and certificate before Mosquitto will start: made
# once (never replaced: devices trust this CA) for this machine's name and addresses, as devices reach it.
if [ "$BROKER" = 1 ]; then
    CERT_FILE="$(conf_value certfile)"
    if [ -n "$CERT_FILE" ] && [ ! -f "$ROOT$CERT_FILE" ] \
        && "$VENV/bin/iotgw" devices certs --help >/dev/null 2>&1; then
        before=$CHANGES
        hosts=(--host "$(hostname -s 2>/dev/null || hostname)")
        for addr in $(hostname -I 2>/dev/null); do hosts+=(--host "$addr"); done
        "$VENV/bin/iotgw" devices certs --dir "$(dirname "$ROOT$CERT_FILE")" "${hosts[@]}" >"$WORK/certs.out" 2>&1 \
            || { cat "$WORK/certs.out" >&2; die "iotgw devices certs (the devices' TLS listener) failed"; }
        if [ -z "$ROOT" ] && getent passwd mosquitto >/dev/null; then
            key="$(conf_value keyfile)"
            [ -n "$key" ] && ensure_owner "$key" "$(id -u mosquitto)" "$(id -g mosquitto)" 600
        fi
        changed "made the devices' TLS CA and broker certificate in $(dirname "$CERT_FILE") (devices need its ca.crt)"
        BROKER_CHANGES=$((BROKER_CHANGES + CHANGES - before))
    fi
fi

# ------------------------------------------------------------------------------------ check and restart
# The service user must be able to read its config and secrets: check them the way the service will.
if [ -n "$ROOT" ]; then
    # Under --root the config names the real paths (/etc/iotgw/...): check a copy that points into DIR.
    sed "s#\"/etc/iotgw/#\"$ETC/#g" "$CONFIG" >"$WORK/check.toml"
    "$VENV/bin/iotgw" check-config --config "$WORK/check.toml" >"$WORK/check.out" 2>&1 \
        || { cat "$WORK/check.out" >&2; die "iotgw check-config failed on ${CONFIG#"$ROOT"}"; }
else
    runuser -u "$SERVICE_USER" -- "$VENV/bin/iotgw" check-config --config "$CONFIG" >"$WORK/check.out" 2>&1 \
        || { cat "$WORK/check.out" >&2; die "iotgw check-config failed on $CONFIG as user $SERVICE_USER"; }
fi
say "config check: ${CONFIG#"$ROOT"} OK"

if [ -z "$ROOT" ] && [ "$SYSTEMD_RUNNING" = 0 ]; then
    say "systemd is not running here: start the services yourself (systemctl start mosquitto iotgw)"
elif [ -z "$ROOT" ] && [ "$CHANGES" -gt 0 ]; then
    if [ "$BROKER_CHANGES" -gt 0 ]; then
        systemctl restart mosquitto.service || say "warning: mosquitto did not restart: journalctl -u mosquitto"
    fi
    systemctl restart iotgw.service || die "systemctl restart iotgw failed: journalctl -u iotgw"
    say "restarted iotgw.service$([ "$BROKER_CHANGES" -gt 0 ] && echo ' and mosquitto.service')"
fi

if [ "$CHANGES" = 0 ]; then
    say "nothing to change: already installed${ROOT:+ under $ROOT}"
else
    say "done: $CHANGES change(s)${ROOT:+ under $ROOT}"
    if [ "$BROKER" = 1 ] && [ "$GATEWAY_ACCOUNT" = 1 ]; then
        say "next: each device's account: /opt/iotgw/.venv/bin/iotgw devices add NAME --site SITE (docs/security.md);"
        say "      health: curl -s 127.0.0.1:9108/healthz"
    elif [ "$BROKER" = 1 ]; then
        say "next: give the broker the gateway's account ($MQTT_USER, password in /etc/iotgw/mqtt.pw) and each"
        say "      device an account (docs/configuration.md, The broker); health: curl -s 127.0.0.1:9108/healthz"
    fi
fi
