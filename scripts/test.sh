#!/usr/bin/env bash
# The whole test suite: sets up .venv if needed, then runs pytest. Arguments are passed to pytest
# (e.g. scripts/test.sh -m slow for the slow tests, scripts/test.sh tests/test_parse.py -x).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
