#!/usr/bin/env bash
# Bootstrap (Debian packages, .venv, the package), then run the demo: the whole chain on this machine.
# Extra arguments go to `iotgw demo` (e.g. --duration 60, --json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/iotgw demo "$@"
