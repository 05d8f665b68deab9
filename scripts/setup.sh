#!/usr/bin/env bash
# Build (or repair) the project's virtual environment in .venv, from nothing, on a fresh machine.
#
#   scripts/setup.sh            set up if needed; a complete venv is checked in seconds
#   scripts/setup.sh --force    re-run every install step into the existing venv
#   scripts/setup.sh --freeze   after a change to requirements/base.txt: rewrite the full pin list
#                               requirements/constraints.txt from the venv
#
# A venv is trusted only when it carries the completion stamp .venv/.jaxloss-setup that records the
# hash of the requirement files and of this script, written as the very last step. An interrupted
# install leaves no stamp (or a stale one), so the next run re-runs every step; pip skips what is
# already there and repairs what is missing. A venv whose interpreter no longer starts is rebuilt.
#
# Environment: PYTHON (interpreter to build the venv from, default python3.11 or python3),
# JAXLOSS_VENV (venv folder, default .venv at the repository root).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${JAXLOSS_VENV:-$root/.venv}"
stamp="$venv/.jaxloss-setup"
python_bin="${PYTHON:-$(command -v python3.11 || command -v python3)}"
force=0
freeze=0
case "${1:-}" in
  --force) force=1 ;;
  --freeze) force=1; freeze=1 ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--force | --freeze]" >&2; exit 2 ;;
esac

say() { printf '[setup] %s\n' "$*" >&2; }

wanted_stamp() {
  cat "$root/requirements/base.txt" "$root/requirements/constraints.txt" "$root/scripts/setup.sh" \
      "$root/scripts/cxx-c++20" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1
}

venv_works() {
  [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1
}

if [[ $force == 0 && -f "$stamp" ]] && venv_works && [[ "$(cat "$stamp")" == "$(wanted_stamp)" ]]; then
  exit 0
fi

if ! venv_works; then
  say "creating $venv with $python_bin"
  rm -rf "$venv"
  "$python_bin" -m venv "$venv"
fi
rm -f "$stamp"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
constraints=(-c "$root/requirements/constraints.txt")
[[ $freeze == 1 ]] && constraints=()

# pip on these machines warns about every package missing from a local extra index; only noise.
run_pip() {
  "${pip[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

say "installing pinned packages (torch, jax, mmengine, mmdet, ...)"
run_pip install -q --upgrade "pip==25.3"
run_pip install -q -r "$root/requirements/base.txt" "${constraints[@]}"

# mmcv 2.1.0 with its compiled ops (RoIAlign, nms, ...): there is no wheel for torch 2.14, so build it.
# torch 2.14's headers need C++20 but mmcv's setup.py appends -std=c++17: the compiler wrapper rewrites
# it. Setting CFLAGS replaces Python's defaults, so give the full set. pip's wheel cache keeps the
# built wheel, so a rebuild on the same machine is quick. Force the CPU build: the ops we need run on
# the CPU here, and a GPU machine would otherwise need nvcc.
if ! "$venv/bin/python" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' >/dev/null 2>&1; then
  say "building mmcv 2.1.0 with compiled ops (about 6 minutes on 2 cores, once per machine)"
  CXX="$root/scripts/cxx-c++20" CFLAGS="-DNDEBUG -O3 -fwrapv" MMCV_WITH_OPS=1 FORCE_CUDA=0 \
    MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    run_pip install -q --no-build-isolation "mmcv==2.1.0" "${constraints[@]}"
fi

say "installing the project (editable)"
run_pip install -q --no-deps --no-build-isolation -e "$root"

check_imports() {
  "$venv/bin/python" - <<'PY'
import importlib
for name in ["jax", "evosax", "orbax.checkpoint", "sympy", "torch", "torchvision", "mmengine",
             "mmcv.ops", "mmdet", "pycocotools.coco", "matplotlib", "hypothesis", "jaxloss", "bridge"]:
    importlib.import_module(name)
import mmcv, mmdet, torch
assert mmcv.__version__ == "2.1.0", mmcv.__version__
assert mmdet.__version__ == "3.3.0", mmdet.__version__
assert torch.__version__.startswith("2.14.1"), torch.__version__
PY
}

say "checking imports"
if ! check_imports; then
  # files of a package can be missing although pip's metadata says it is installed (an install
  # killed half-way): reinstall everything once, then check again
  say "an import failed: reinstalling every pinned package"
  run_pip install -q --force-reinstall -r "$root/requirements/base.txt" "${constraints[@]}"
  check_imports
fi

if [[ $freeze == 1 ]]; then
  { echo "# Every package of the project's .venv, pinned (pip freeze after scripts/setup.sh). Passed to pip as"
    echo "# constraints: regenerate with scripts/setup.sh --freeze after changing requirements/base.txt."
    "${pip[@]}" freeze --exclude-editable | grep -v '^-e '; } >"$root/requirements/constraints.txt.new"
  mv "$root/requirements/constraints.txt.new" "$root/requirements/constraints.txt"
  say "rewrote requirements/constraints.txt"
fi

wanted_stamp >"$stamp"
say "environment ready: $venv"
