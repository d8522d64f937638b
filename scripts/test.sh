#!/usr/bin/env bash
# Bootstrap (Debian packages, .venv, the package, npm packages), then run the whole test suite:
# lint, gateway and sandbox tests on real servers, firmware host tests and builds, MicroPython tests,
# hardware-in-the-loop tests on simulated boards. Exits non-zero on any failure.
# Extra arguments go to pytest (e.g. -k serial, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "== ruff"
.venv/bin/ruff check .
echo "== pytest"
exec .venv/bin/pytest -n 2 --durations=30 -p no:cacheprovider "$@"
