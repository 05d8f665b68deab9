#!/usr/bin/env bash
# The main job: sets up .venv if needed, then runs it. Arguments are passed on.
# Until the search exists (python -m jaxloss.search), the main job is the check of the known-loss
# library: every known loss parsed, printed, evaluated, and its published forms compared.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
exec "$root/.venv/bin/python" -m jaxloss.library_check "$@"
