#!/usr/bin/env bash
# Build (or repair) the project's virtual environment in .venv, from nothing, on a fresh machine.
#
#   scripts/setup.sh            set up if needed; a complete venv is checked in seconds
#   scripts/setup.sh --force    re-run every install step into the existing venv
#   scripts/setup.sh --freeze   after a change to requirements/base.txt: rewrite the full pin list
#                               requirements/constraints.txt from the venv (on a CPU build only)
#
# The build follows the machine (scripts/accelerator.py decides; see its docs): on a machine without
# an NVIDIA GPU, the CPU build (torch from PyPI, jax, mmcv 2.1.0 with its CPU ops); with one, the CUDA
# build (the same torch when the driver supports its CUDA 13.0, else torch's CUDA 12.8 build from
# PyTorch's index; jax with its CUDA plugin; mmcv with its CUDA kernels for the visible GPUs).
#
# A venv is trusted only when it carries the completion stamp .venv/.jaxloss-setup, written as the
# very last step: the hash of the requirement files and of the setup scripts, then the build's kind
# ("accelerator=cpu", or "accelerator=cuda cuda=13.0 arch=9.0"). An interrupted install leaves no
# stamp (or a stale one), so the next run re-runs every step; pip skips what is already there and
# repairs what is missing. A venv whose interpreter no longer starts is rebuilt. A venv built for
# another kind of machine (a CPU venv on a GPU machine, other GPUs, another CUDA version) is said so
# and its machine-specific packages are rebuilt.
#
# Environment: PYTHON (interpreter to build the venv from, default python3.11 or python3),
# JAXLOSS_VENV (venv folder, default .venv at the repository root), JAXLOSS_ACCELERATOR (auto
# (default), cpu or cuda: the build regardless of the GPUs seen; cuda fails without a visible GPU),
# TORCH_CUDA_ARCH_LIST (GPU generations mmcv's CUDA kernels are built for; default: the visible
# GPUs'), CUDA_HOME (a CUDA toolkit to build mmcv with, used when its CUDA major version is torch's),
# JAXLOSS_CACHE_DIR (where built mmcv CUDA wheels are kept, default ~/.cache/jaxloss), MAX_JOBS.
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

wanted_hash() {
  cat "$root/requirements/base.txt" "$root/requirements/constraints.txt" "$root/scripts/setup.sh" \
      "$root/scripts/cxx-c++20" "$root/scripts/nvcc-c++20" "$root/scripts/accelerator.py" \
      "$root/pyproject.toml" | sha256sum | cut -d' ' -f1
}

venv_works() {
  [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1
}

# What this machine calls for: plan_kind (cpu | cuda), plan_cuda, plan_arch_list, ... and the
# state of the venv's stamp (stamp_status: ok | missing | stale | moved), as shell assignments.
hash="$(wanted_hash)"
if ! plan="$("$python_bin" "$root/scripts/accelerator.py" plan --format shell \
               --constraints "$root/requirements/constraints.txt" --stamp "$stamp" --hash "$hash")"; then
  say "cannot set up the environment (the error above says why)"
  exit 2
fi
eval "$plan"

if [[ $force == 0 && $stamp_status == ok ]] && venv_works; then
  exit 0
fi

say "$plan_summary"
while IFS= read -r warning; do
  [[ -n "$warning" ]] && say "warning: $warning"
done <<<"$plan_warnings"
moved=0
if [[ $stamp_status == moved ]]; then
  say "$stamp_message"
  moved=1
fi
if [[ $freeze == 1 && $plan_kind != cpu ]]; then
  say "--freeze pins the CPU build's packages: run it on a machine without a GPU, or with"
  say "JAXLOSS_ACCELERATOR=cpu JAXLOSS_VENV=<another folder> (the CUDA build adds packages a CPU"
  say "machine must not get)"
  exit 2
fi

if ! venv_works; then
  say "creating $venv with $python_bin"
  rm -rf "$venv"
  "$python_bin" -m venv "$venv"
fi
rm -f "$stamp"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
constraints_file="$root/requirements/constraints.txt"
if [[ -n "$plan_drop_constraints" ]]; then
  # torch's CUDA 12 build: the CUDA 13 libraries pinned for PyPI's torch do not apply
  constraints_file="$venv/.constraints-cuda$plan_cuda.txt"
  grep -Ev "$plan_drop_constraints" "$root/requirements/constraints.txt" >"$constraints_file"
fi
constraints=(-c "$constraints_file")
[[ $freeze == 1 ]] && constraints=()

# pip on these machines warns about every package missing from a local extra index; only noise.
run_pip() {
  "${pip[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

installed_version() {
  "$venv/bin/python" -c 'import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass' "$1"
}

run_pip install -q --upgrade "pip==25.3"

# torch: PyPI's wheel (every CPU machine, and GPU machines whose driver supports its CUDA version),
# or the plan's build from PyTorch's index. A venv holding the other one gets the right one.
read -ra torch_specs <<<"$plan_torch_specs"
torch_wanted="$(sed -n 's/^torch==//p' "$root/requirements/constraints.txt")"
[[ ${#torch_specs[@]} -gt 0 ]] && torch_wanted="${torch_specs[0]#torch==}"
torch_now="$(installed_version torch)"
if [[ -n "$torch_now" && -n "$torch_wanted" && "$torch_now" != "$torch_wanted" ]]; then
  say "replacing torch $torch_now with $torch_wanted"
  run_pip uninstall -q -y torch torchvision
fi
if [[ ${#torch_specs[@]} -gt 0 ]]; then
  say "installing ${torch_specs[*]} from $plan_torch_index"
  if ! run_pip install -q --extra-index-url "$plan_torch_index" "${torch_specs[@]}" "${constraints[@]}"; then
    say "error: could not install ${torch_specs[*]} from $plan_torch_index (see pip's message)."
    say "With an NVIDIA driver 580 or newer (CUDA 13) the setup takes PyPI's torch instead; or build"
    say "the CPU environment: JAXLOSS_ACCELERATOR=cpu scripts/setup.sh"
    exit 1
  fi
fi

say "installing pinned packages (torch, jax, mmengine, mmdet, ...)"
run_pip install -q -r "$root/requirements/base.txt" "${constraints[@]}"

# jax: the CUDA build adds its CUDA plugin (and NVIDIA's nvcc packages of the plan's CUDA version,
# whose ptxas the plugin uses and which can build mmcv); the CPU build has none.
if [[ $plan_kind == cuda ]]; then
  read -ra cuda_packages <<<"$plan_cuda_packages"
  say "installing $plan_jax_spec and NVIDIA's CUDA $plan_cuda compiler packages"
  run_pip install -q "$plan_jax_spec" "${cuda_packages[@]}" "${constraints[@]}"
else
  # a venv of a GPU build: its jax CUDA plugin and NVIDIA's compiler packages go (those the CPU
  # build pins stay), and so does the CUDA_HOME assembled for its mmcv build
  extras="$("$venv/bin/python" - "$root/requirements/constraints.txt" <<'PY'
import importlib.metadata as m, re, sys
pinned = {re.sub(r"[-_.]+", "-", l.split("==")[0]).lower()
          for l in open(sys.argv[1]) if "==" in l and not l.startswith("#")}
for name in ["jax-cuda13-plugin", "jax-cuda13-pjrt", "jax-cuda12-plugin", "jax-cuda12-pjrt",
             "nvidia-cuda-nvcc", "nvidia-cuda-crt", "nvidia-nvvm", "nvidia-cuda-cccl",
             "nvidia-cuda-nvcc-cu12"]:
    try:
        m.version(name)
    except m.PackageNotFoundError:
        continue
    if name not in pinned:
        print(name)
PY
)"
  if [[ -n "$extras" ]]; then
    say "removing the packages of a GPU build: $(echo $extras)"
    # shellcheck disable=SC2086
    run_pip uninstall -q -y $extras
  fi
  rm -rf "$venv/cuda"
fi

# mmcv 2.1.0 with its compiled ops (RoIAlign, nms, ...): there is no wheel for torch 2.14, so build it.
# torch 2.14's headers need C++20 but mmcv's setup.py appends -std=c++17: the compiler wrappers
# (scripts/cxx-c++20 for g++, scripts/nvcc-c++20 for nvcc) rewrite it. Setting CFLAGS replaces
# Python's defaults, so give the full set. mmcv's setup.py builds its CUDA kernels when torch sees a
# GPU or FORCE_CUDA=1: the CPU build hides the GPUs (CUDA_VISIBLE_DEVICES=) so that it is the CPU
# build on any machine.
mmcv_matches() {
  "$venv/bin/python" - "$plan_kind" "$plan_cuda" >/dev/null 2>&1 <<'PY'
import sys
import mmcv, mmcv.ops
from mmcv.ops import get_compiling_cuda_version
assert mmcv.__version__ == "2.1.0"
built = get_compiling_cuda_version()  # "not available" for the CPU build, else "13.0", ...
kind, cuda = sys.argv[1], sys.argv[2]
assert built == "not available" if kind == "cpu" else built.split(".")[0] == cuda.split(".")[0]
PY
}
# an mmcv of the other kind, or built for other GPUs (moved), or broken, goes first
if [[ -n "$(installed_version mmcv)" ]] && { [[ $moved == 1 ]] || ! mmcv_matches; }; then
  run_pip uninstall -q -y mmcv
fi
if ! mmcv_matches; then
  if [[ $plan_kind == cpu ]]; then
    # pip's wheel cache keeps the built wheel, so a rebuild on the same machine is quick
    say "building mmcv 2.1.0 with compiled ops (about 6 minutes on 2 cores, once per machine)"
    CXX="$root/scripts/cxx-c++20" CFLAGS="-DNDEBUG -O3 -fwrapv" MMCV_WITH_OPS=1 FORCE_CUDA=0 \
      CUDA_VISIBLE_DEVICES="" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      run_pip install -q --no-build-isolation "mmcv==2.1.0" "${constraints[@]}"
  else
    # The CUDA build is kept in a cache of its own, by what it depends on (python, torch, CUDA,
    # GPU generations): pip's wheel cache knows none of that, and would hand a GPU machine the CPU
    # wheel (or a CPU machine the CUDA one) from a home folder both share.
    wheels="${JAXLOSS_CACHE_DIR:-$HOME/.cache/jaxloss}/wheels/mmcv-2.1.0/$plan_mmcv_key"
    wheel="$(ls "$wheels"/mmcv-2.1.0-*.whl 2>/dev/null | head -n 1 || true)"
    if [[ -z "$wheel" ]]; then
      if [[ $plan_nvcc_source == pip ]]; then
        site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        cuda_home="$("$python_bin" "$root/scripts/accelerator.py" cuda-home --site "$site" \
                       --dest "$venv/cuda")"
      else
        cuda_home="$plan_cuda_home"
      fi
      jobs="${MAX_JOBS:-$plan_max_jobs}"
      say "building mmcv 2.1.0 with its CUDA kernels for compute capability $plan_arch_list"
      say "  nvcc: $plan_nvcc_reason"
      say "  $jobs parallel jobs; tens of minutes, once per kind of machine (kept in $wheels)"
      build="$(mktemp -d)"
      # ninja (from the venv, hence PATH) compiles with PYTORCH_NVCC; without it torch would call
      # CUDA_HOME/bin/nvcc itself, with mmcv's -std=c++17
      CUDA_HOME="$cuda_home" PATH="$venv/bin:$cuda_home/bin:$PATH" \
        PYTORCH_NVCC="$root/scripts/nvcc-c++20" REAL_NVCC="$cuda_home/bin/nvcc" \
        CXX="$root/scripts/cxx-c++20" CFLAGS="-DNDEBUG -O3 -fwrapv" MMCV_WITH_OPS=1 FORCE_CUDA=1 \
        TORCH_CUDA_ARCH_LIST="$plan_arch_list" MAX_JOBS="$jobs" \
        run_pip wheel -q --no-deps --no-build-isolation --no-cache-dir -w "$build" "mmcv==2.1.0" \
        "${constraints[@]}"
      mkdir -p "$wheels"
      mv "$build"/mmcv-2.1.0-*.whl "$wheels/"
      rm -rf "$build"
      wheel="$(ls "$wheels"/mmcv-2.1.0-*.whl | head -n 1)"
    fi
    say "installing $wheel"
    run_pip install -q "$wheel" "${constraints[@]}"
  fi
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
  index=()
  [[ -n "$plan_torch_index" ]] && index=(--extra-index-url "$plan_torch_index")
  # (${a[@]+"${a[@]}"}: an empty array, which bash before 4.4 calls unbound under set -u)
  run_pip install -q --force-reinstall -r "$root/requirements/base.txt" \
    ${torch_specs[@]+"${torch_specs[@]}"} ${index[@]+"${index[@]}"} "${constraints[@]}"
  check_imports
fi

say "checking the $plan_kind build"
if ! "$venv/bin/python" "$root/scripts/accelerator.py" verify --kind "$plan_kind" --cuda "$plan_cuda"; then
  say "the $plan_kind build does not work (the error above says why); after fixing the cause,"
  say "run scripts/setup.sh again (or JAXLOSS_ACCELERATOR=cpu scripts/setup.sh for the CPU build)"
  exit 1
fi

if [[ $freeze == 1 ]]; then
  { echo "# Every package of the project's .venv, pinned (pip freeze after scripts/setup.sh). Passed to pip as"
    echo "# constraints: regenerate with scripts/setup.sh --freeze after changing requirements/base.txt."
    "${pip[@]}" freeze --exclude-editable | grep -v '^-e '; } >"$root/requirements/constraints.txt.new"
  mv "$root/requirements/constraints.txt.new" "$root/requirements/constraints.txt"
  say "rewrote requirements/constraints.txt"
fi

# the format of scripts/accelerator.py's stamp_text
printf '%s\n%s\n' "$hash" "$plan_stamp_line" >"$stamp"
say "environment ready ($plan_stamp_line): $venv"
