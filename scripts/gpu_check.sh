#!/usr/bin/env bash
# The GPU check (under 8 minutes on one H100 / H200 once scripts/setup.sh has built the CUDA
# environment): prints one JSON object on stdout with the filter throughput on the GPU (target: at
# least 1,000,000 candidate checks per second), bridge.to_torch on CUDA against JAX, 20 iterations
# each of the paper's FCOS and Faster R-CNN R50-FPN on the embedded data (seconds per step, peak
# GPU memory; random initial weights, since the check needs no internet) and two generations of
# the JAX search stages. Progress goes to stderr. Each part runs in a process of its own and
# reports its own error; see benchmarks/gpu_check.py (arguments are passed on to it, e.g.
# --parts filter_throughput,to_torch or --budget 300).
#
# Exit status: 0 every part passed; 1 a part failed (its "error" in the JSON says why); 2 no CUDA
# device visible (nvidia-smi sees no GPU, or torch / jax cannot use it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${JAXLOSS_VENV:-$root/.venv}"

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU visible: nvidia-smi is not installed (no NVIDIA driver)." >&2
  echo "Run this on a machine with an NVIDIA GPU (on CPU: python -m benchmarks.gpu_check --device cpu --quick)." >&2
  exit 2
fi
if ! gpus="$(nvidia-smi -L 2>&1)" || [[ "$gpus" != *GPU* ]]; then
  echo "gpu_check: no NVIDIA GPU visible: nvidia-smi -L says: $gpus" >&2
  exit 2
fi
case "${CUDA_VISIBLE_DEVICES-unset}" in
  "" | -1*) echo "gpu_check: CUDA_VISIBLE_DEVICES='$CUDA_VISIBLE_DEVICES' hides every GPU" >&2; exit 2 ;;
esac
if [[ "${JAXLOSS_ACCELERATOR:-auto}" == cpu ]]; then
  echo "gpu_check: JAXLOSS_ACCELERATOR=cpu asks for the CPU build; unset it (or set it to cuda)" >&2
  exit 2
fi

"$root/scripts/setup.sh"
cd "$root"
exec "$venv/bin/python" -m benchmarks.gpu_check --device cuda --json "$@"
