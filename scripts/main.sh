#!/usr/bin/env bash
# The main job: sets up .venv (or $JAXLOSS_VENV) if needed, then runs it. Arguments are passed on.
# The main job is the search, python -m jaxloss.search (with no arguments: a complete search on the
# embedded default; --help lists the options).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
exec "${JAXLOSS_VENV:-$root/.venv}/bin/python" -m jaxloss.search "$@"
