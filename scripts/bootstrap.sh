#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian 12 machine, as root. Idempotent: what is there
# already is not installed again. Used by scripts/demo.sh, scripts/test.sh and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-dev gcc g++ make git
  libsqlite3-dev  # the drain's native reader (gateway/native, built by pip install)
  mariadb-server mariadb-client mariadb-backup
  mosquitto mosquitto-clients openssl
  gcc-avr avr-libc binutils-avr arduino-core-avr
  simavr libsimavr-dev libelf-dev pkg-config doctest-dev
  systemd shellcheck  # systemd-analyze verify and shellcheck: the installer's tests (tests/deploy)
  chromium chromium-driver tmux  # the status page in a real browser, `iotgw status --watch` in a pane (tests/status)
)
command -v node >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends keeps arduino-core-avr from pulling in the Java IDE
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packaged services do not start by themselves here, and must not: tests start their own servers.

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.iotgw-installed
# Installed again when the package's metadata or a C source changed (pip builds gateway/native in place).
rebuild=0
for f in pyproject.toml setup.py gateway/native/*.c; do
  [ "$f" -nt "$stamp" ] && rebuild=1
done
if [ ! -f "$stamp" ] || [ "$rebuild" = 1 ]; then
  echo "bootstrap: installing the gateway package and its test tools into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[test,dev]"
  touch "$stamp"
fi

if [ -f firmware/micropython/package.json ]; then
  lock=firmware/micropython/package-lock.json
  if [ ! -d firmware/micropython/node_modules ] || { [ -f "$lock" ] && [ "$lock" -nt firmware/micropython/node_modules ]; }; then
    echo "bootstrap: installing npm packages into firmware/micropython/node_modules"
    if [ -f "$lock" ]; then
      npm ci --prefix firmware/micropython --no-audit --no-fund --loglevel=error
    else
      npm install --prefix firmware/micropython --no-audit --no-fund --loglevel=error
    fi
    touch firmware/micropython/node_modules
  fi
fi
echo "bootstrap: ready"
