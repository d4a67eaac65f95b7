#!/usr/bin/env bash
# Start a loopback Synapse, run synctest against it, stop it: `make synctest-synapse`.
# Any extra arguments go to run_synapse.py (e.g. `start`, or `synctest --filter cors`).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
if [ $# -eq 0 ]; then set -- synctest; fi
exec "$python" "$root/scripts/synapse/run_synapse.py" "$@"
