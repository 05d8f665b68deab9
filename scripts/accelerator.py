"""Which accelerator the project's environment is built for, and how: scripts/setup.sh's plan.

Runs with the interpreter that builds the venv, before the venv exists: standard library only.

A machine is probed (:func:`probe`): the NVIDIA GPUs ``nvidia-smi`` lists (name, compute
capability), the CUDA version the driver supports, ``CUDA_VISIBLE_DEVICES``, the CUDA toolkits
installed (nvcc and the headers torch's CUDA headers include). :func:`make_plan` turns the probe and
the pins of requirements/constraints.txt into a :class:`Plan`:

* ``cpu`` (no NVIDIA GPU visible, or ``JAXLOSS_ACCELERATOR=cpu``): exactly the packages and build a
  CPU machine always had: torch 2.14.1 from PyPI (a CUDA 13.0 build, which runs on a CPU), jax
  without a CUDA plugin, mmcv 2.1.0 built with its CPU ops only.
* ``cuda`` (an NVIDIA GPU visible, or ``JAXLOSS_ACCELERATOR=cuda``): the same torch wheel when the
  driver supports its CUDA version (13.0: driver 580 or newer), else, for a driver of CUDA 12.x,
  torch's CUDA 12.8 build from PyTorch's own index; ``jax[cuda13]`` / ``jax[cuda12]`` of the pinned
  jax version (the jax-cudaNN-plugin and -pjrt wheels, with NVIDIA's pip CUDA libraries); mmcv
  built with its CUDA kernels (``FORCE_CUDA=1``) for the compute capabilities of the visible GPUs
  (``TORCH_CUDA_ARCH_LIST``, unless already set), with the machine's nvcc when its CUDA major
  version is torch's and its toolkit has the headers torch includes, else (CUDA 13 only: CUDA 12's
  pip package has no nvcc) with NVIDIA's pip nvcc of torch's CUDA version, for which
  :func:`make_cuda_home` assembles a CUDA_HOME in the venv.

The plan's kind, CUDA version and arch list are recorded in the venv's completion stamp
(:func:`stamp_text`), so that a venv built for one kind of machine and used on another is noticed
(:func:`stamp_status`).

Command line (used by scripts/setup.sh)::

    python3 scripts/accelerator.py plan --constraints requirements/constraints.txt \\
        [--stamp .venv/.jaxloss-setup --hash HASH] [--format shell|json|text]
    python3 scripts/accelerator.py cuda-home --site SITE_PACKAGES --dest .venv/cuda
    .venv/bin/python scripts/accelerator.py verify --kind cuda --cuda 13.0

Environment: ``JAXLOSS_ACCELERATOR`` (``auto`` (default), ``cpu`` or ``cuda``),
``CUDA_VISIBLE_DEVICES``, ``TORCH_CUDA_ARCH_LIST`` (kept when set), ``CUDA_HOME`` / ``CUDA_PATH``
(a CUDA toolkit to prefer).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

OVERRIDE = "JAXLOSS_ACCELERATOR"
"""Environment variable choosing the kind of build: auto (default), cpu or cuda."""

KINDS = ("auto", "cpu", "cuda")

MIN_COMPUTE_CAPABILITY = {12: (5, 0), 13: (7, 5)}
"""Oldest GPU generation each CUDA major version compiles for (CUDA 13 dropped Maxwell, Pascal and
Volta: compute capability below 7.5)."""

CUDA12_BUILD = (12, 8)
"""The CUDA version of torch / jax / nvcc installed when the driver supports only CUDA 12.x (the
pinned torch wheel on PyPI is a CUDA 13 build, which needs driver 580 or newer). A CUDA 12.8 build
runs on any CUDA 12 driver (CUDA's minor-version compatibility): its kernels are compiled ahead of
time for the GPUs it supports."""

PYTORCH_INDEX = "https://download.pytorch.org/whl/cu{major}{minor}"

TORCH_CUDA_HEADERS = ("cuda_runtime.h", "cublas_v2.h", "cusparse.h", "cusolverDn.h")
"""Headers of a CUDA toolkit that torch's CUDA headers (ATen/cuda/CUDAContext.h, which every mmcv
CUDA op includes) need: a toolkit with nvcc but without the math libraries' headers cannot build
mmcv."""

NVCC_JOB_BYTES = 3 << 30
"""Memory one parallel nvcc job on mmcv's sources (torch's headers, C++20) may take: MAX_JOBS is
capped by the available memory / this."""

SMI_TIMEOUT_S = 60


class PlanError(Exception):
    """The environment asks for something this machine cannot give (message says what to do)."""


# ------------------------------------------------------------------------------------------------
# probing the machine
# ------------------------------------------------------------------------------------------------

class System:
    """What :func:`probe` asks of the machine; tests substitute a fake."""

    def run(self, cmd: Sequence[str]) -> "tuple[int, str] | None":
        """(exit status, stdout + stderr) of ``cmd``, or None when the program is not found."""
        try:
            done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=SMI_TIMEOUT_S)
        except FileNotFoundError:
            return None
        except subprocess.TimeoutExpired:
            return 124, f"{cmd[0]} did not answer within {SMI_TIMEOUT_S} s"
        except OSError as error:
            return 126, str(error)
        return done.returncode, (done.stdout or "") + (done.stderr or "")

    def which(self, name: str) -> "str | None":
        return shutil.which(name)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def cpu_count(self) -> int:
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1

    def mem_available(self) -> "int | None":
        """Bytes of memory available (MemAvailable of /proc/meminfo), None when unknown."""
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return None


@dataclass
class Gpu:
    index: int
    name: str
    compute_cap: str
    """e.g. "9.0" (H100, H200), "8.0" (A100)."""


@dataclass
class Toolkit:
    """A CUDA toolkit found on the machine."""

    home: str
    """Its root (CUDA_HOME): bin/nvcc, include/."""
    found_by: str
    """How: "CUDA_HOME", "CUDA_PATH", "nvcc on PATH" or "/usr/local/cuda"."""
    version: "tuple[int, int] | None"
    """nvcc's CUDA version (major, minor); None when nvcc --version could not be read."""
    missing_headers: "tuple[str, ...]" = ()
    """Headers of :data:`TORCH_CUDA_HEADERS` that its include/ lacks."""

    def describe(self) -> str:
        version = "?" if self.version is None else "%d.%d" % self.version
        return f"nvcc {version} at {self.home} ({self.found_by})"


@dataclass
class Probe:
    """What the machine has. ``gpus`` None: nvidia-smi is not installed."""

    environ: Mapping[str, str]
    gpus: "list[Gpu] | None" = None
    smi_error: "str | None" = None
    """nvidia-smi is installed but failed (its message)."""
    driver_version: "str | None" = None
    driver_cuda: "tuple[int, int] | None" = None
    """The newest CUDA version the driver supports (nvidia-smi's "CUDA Version")."""
    toolkits: "list[Toolkit]" = field(default_factory=list)
    cpus: int = 1
    mem_available: "int | None" = None


_CAP = re.compile(r"^\d+\.\d+$")
_CUDA_VERSION = re.compile(r"CUDA Version\s*:\s*(\d+)\.(\d+)")
_NVCC_RELEASE = re.compile(r"release (\d+)\.(\d+)")


def parse_gpu_query(text: str) -> "list[Gpu]":
    """GPUs from ``nvidia-smi --query-gpu=index,name,compute_cap,driver_version
    --format=csv,noheader`` (one line each; the name may hold commas, the other fields not)."""
    gpus = []
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or not parts[0].isdigit():
            raise PlanError(f"cannot read nvidia-smi's GPU list, line {line!r}")
        index, name, cap = int(parts[0]), ", ".join(parts[1:-2]), parts[-2]
        if not _CAP.match(cap):
            raise PlanError(
                f"nvidia-smi gives no compute capability for GPU {index} ({name}): {cap!r} (a "
                "driver older than 510 cannot report it); update the NVIDIA driver, or set "
                "TORCH_CUDA_ARCH_LIST yourself (e.g. TORCH_CUDA_ARCH_LIST=8.0)")
        gpus.append(Gpu(index, name, cap))
    return gpus


def nvcc_version(text: str) -> "tuple[int, int] | None":
    """(major, minor) from ``nvcc --version`` ("Cuda compilation tools, release 13.0, V13.0.88")."""
    m = _NVCC_RELEASE.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def probe(environ: "Mapping[str, str] | None" = None, system: "System | None" = None) -> Probe:
    """Look at the machine: GPUs and driver (nvidia-smi), CUDA toolkits, cores and memory."""
    environ = dict(os.environ if environ is None else environ)
    system = system or System()
    found = Probe(environ=environ, cpus=system.cpu_count(), mem_available=system.mem_available())
    query = system.run(["nvidia-smi", "--query-gpu=index,name,compute_cap,driver_version",
                        "--format=csv,noheader"])
    if query is not None:
        rc, out = query
        if rc != 0:
            # "No devices were found" (a driver without a GPU, or a container given none) is no GPU;
            # anything else is a broken driver, which the plan reports
            if "no devices were found" in out.lower():
                found.gpus = []
            else:
                found.gpus, found.smi_error = [], out.strip() or f"exit status {rc}"
        else:
            try:
                found.gpus = parse_gpu_query(out)
            except PlanError as error:
                found.gpus, found.smi_error = [], str(error)
            if found.gpus:
                found.driver_version = out.strip().splitlines()[0].split(",")[-1].strip()
            banner = system.run(["nvidia-smi"])
            if banner is not None and banner[0] == 0:
                m = _CUDA_VERSION.search(banner[1])
                if m:
                    found.driver_cuda = (int(m.group(1)), int(m.group(2)))
    found.toolkits = find_toolkits(environ, system)
    return found


def find_toolkits(environ: Mapping[str, str], system: System) -> "list[Toolkit]":
    """CUDA toolkits in the order torch's cpp_extension looks for them: CUDA_HOME, CUDA_PATH, the
    nvcc on PATH, /usr/local/cuda (each once)."""
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if environ.get(var):
            candidates.append((environ[var], var))
    on_path = system.which("nvcc")
    if on_path:
        candidates.append((os.path.dirname(os.path.dirname(system.realpath(on_path))),
                           "nvcc on PATH"))
    candidates.append(("/usr/local/cuda", "/usr/local/cuda"))
    toolkits, seen = [], set()
    for home, how in candidates:
        home = home.rstrip("/") or "/"
        nvcc = os.path.join(home, "bin", "nvcc")
        if home in seen or not system.exists(nvcc):
            continue
        seen.add(home)
        answer = system.run([nvcc, "--version"])
        version = nvcc_version(answer[1]) if answer and answer[0] == 0 else None
        missing = tuple(h for h in TORCH_CUDA_HEADERS
                        if not system.exists(os.path.join(home, "include", h)))
        toolkits.append(Toolkit(home, how, version, missing))
    return toolkits


# ------------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------------

@dataclass
class Plan:
    kind: str
    """"cpu" or "cuda"."""
    reason: str
    """Why this kind (for the setup's log)."""
    cuda: "str | None" = None
    """CUDA version of the torch / jax / mmcv builds, "13.0"; None for cpu."""
    arch_list: "str | None" = None
    """TORCH_CUDA_ARCH_LIST for mmcv's kernels, compute capabilities joined by ";": "8.0;9.0"."""
    gpus: "list[str]" = field(default_factory=list)
    """The visible GPUs, "NVIDIA H100 80GB HBM3 (9.0)"."""
    driver: "str | None" = None
    """Driver version and the CUDA version it supports: "580.65.06 (CUDA 13.0)"."""
    torch_index: "str | None" = None
    """An extra package index for torch (PyTorch's own, for a CUDA 12 build); None: PyPI."""
    torch_specs: "list[str]" = field(default_factory=list)
    """Requirements installed from ``torch_index`` before requirements/base.txt (empty: torch
    comes with base.txt, the same wheel on every machine)."""
    drop_constraints: "str | None" = None
    """A regular expression of the constraints.txt lines to leave out (the CUDA 13 libraries the
    PyPI torch pins, when torch is a CUDA 12 build); None: every line."""
    jax_spec: "str | None" = None
    """e.g. "jax[cuda13]==0.10.2" (the pinned jax with its CUDA plugin); None for cpu."""
    cuda_packages: "list[str]" = field(default_factory=list)
    """NVIDIA's pip packages of nvcc (and its headers) at the plan's CUDA version: jax's plugin
    uses their ptxas, and mmcv's build their nvcc when the machine has no suitable one."""
    nvcc_source: "str | None" = None
    """"system" (a CUDA toolkit of the machine) or "pip" (``cuda_packages``); None for cpu."""
    nvcc_reason: "str | None" = None
    cuda_home: "str | None" = None
    """CUDA_HOME for mmcv's build with the system's nvcc; None with pip's (setup.sh assembles
    ``.venv/cuda`` with :func:`make_cuda_home`)."""
    force_cuda: str = "0"
    """mmcv's FORCE_CUDA: "1" builds its CUDA kernels."""
    max_jobs: int = 1
    """Parallel compile jobs for mmcv's build (cores, capped by memory for nvcc)."""
    mmcv_key: str = ""
    """What the mmcv wheel built by this plan depends on (a folder name of the wheel cache)."""
    warnings: "list[str]" = field(default_factory=list)

    def stamp_line(self) -> str:
        """The accelerator line of the completion stamp."""
        if self.kind == "cpu":
            return "accelerator=cpu"
        return f"accelerator=cuda cuda={self.cuda} arch={self.arch_list}"

    def summary(self) -> str:
        if self.kind == "cpu":
            return f"accelerator: cpu ({self.reason})"
        torch = ("torch from PyPI (the same wheel as on a CPU machine)" if not self.torch_index
                 else f"{' '.join(self.torch_specs)} from {self.torch_index}")
        return (f"accelerator: cuda {self.cuda} ({self.reason}); GPUs: {', '.join(self.gpus)}; "
                f"driver {self.driver or 'unknown'}; {torch}; {self.jax_spec}; mmcv's CUDA ops "
                f"for compute capability {self.arch_list}, nvcc: {self.nvcc_reason}")


def read_pins(path: "str | Path") -> "dict[str, str]":
    """``name==version`` lines of a constraints file, names lower-case with "_" as "-"."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name.strip()).lower()] = version.strip()
    return pins


def torch_wheel_cuda(pins: Mapping[str, str]) -> "tuple[int, int]":
    """The CUDA version the pinned PyPI torch wheel is built for, from the pin of the CUDA runtime
    it requires (cuda-toolkit 13.0.x, or nvidia-cuda-runtime for older torch)."""
    for name in ("cuda-toolkit", "nvidia-cuda-runtime", "nvidia-cuda-runtime-cu12"):
        if name in pins:
            major, minor = pins[name].split(".")[:2]
            return int(major), int(minor)
    raise PlanError("requirements/constraints.txt pins no cuda-toolkit / nvidia-cuda-runtime: "
                    "cannot tell which CUDA version the pinned torch wheel is built for")


def _visible(gpus: "list[Gpu]", environ: Mapping[str, str]) -> "tuple[list[Gpu], str | None]":
    """The GPUs CUDA_VISIBLE_DEVICES leaves (all when unset; when it names GPUs by UUID or MIG
    instance, all: a superset of arch flags costs only build time)."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return gpus, None
    entries = [e.strip() for e in value.split(",") if e.strip()]
    if not entries or entries[0].startswith("-") or value.strip().lower() == "nodevfiles":
        return [], f"CUDA_VISIBLE_DEVICES={value!r} hides every GPU"
    if all(e.isdigit() for e in entries):
        wanted = [int(e) for e in entries]
        return [g for g in gpus if g.index in wanted], None
    return gpus, None


def build_jobs(cpus: int, mem_available: "int | None", job_bytes: int = NVCC_JOB_BYTES) -> int:
    """Parallel nvcc jobs: one per core, at most one per ``job_bytes`` of available memory."""
    jobs = max(1, int(cpus))
    if mem_available is not None:
        jobs = min(jobs, max(1, int(mem_available // job_bytes)))
    return jobs


def _cap(text: str) -> "tuple[int, int]":
    major, minor = text.split(".")[:2]
    return int(major), int(re.match(r"\d+", minor).group())


def make_plan(found: Probe, pins: Mapping[str, str], python_tag: str = "") -> Plan:
    """The build for the probed machine and the pinned packages (raises PlanError, with what to do,
    when the environment asks for what the machine cannot give)."""
    env = found.environ
    wanted = (env.get(OVERRIDE) or "auto").strip().lower()
    if wanted not in KINDS:
        raise PlanError(f"{OVERRIDE}={env.get(OVERRIDE)!r} is not one of {', '.join(KINDS)}")
    gpus, hidden = _visible(found.gpus or [], env)

    if wanted == "cpu":
        plan = Plan("cpu", f"{OVERRIDE}=cpu")
        if gpus and hidden is None:
            plan.warnings.append(
                f"{OVERRIDE}=cpu on a machine with {len(gpus)} NVIDIA GPU(s): torch still sees "
                "them and mmdet would put the detectors on the GPU, where the CPU build of mmcv "
                "has no kernels; hide them too (CUDA_VISIBLE_DEVICES=) to run on the CPU")
        return _finish_cpu(plan, found, python_tag, pins)
    if found.smi_error and not (wanted == "auto" and hidden):
        hint = (" (a driver older than 510 cannot report compute capabilities)"
                if "compute_cap" in found.smi_error else "")
        raise PlanError(
            f"nvidia-smi failed: {found.smi_error}{hint}\n"
            "On a GPU machine, fix or update the NVIDIA driver (or run on a node that has the "
            f"GPU); to build the CPU environment instead, set {OVERRIDE}=cpu")
    if not gpus:
        if wanted == "cuda":
            why = (hidden if hidden else "nvidia-smi is not installed (no NVIDIA driver)"
                   if found.gpus is None else "nvidia-smi lists no GPU")
            raise PlanError(f"{OVERRIDE}=cuda, but no NVIDIA GPU is visible: {why}. Run on a "
                            f"machine with an NVIDIA GPU and its driver, or set {OVERRIDE}=cpu "
                            "(or unset it) to build the CPU environment")
        reason = hidden or ("no NVIDIA driver (nvidia-smi not found)" if found.gpus is None
                            else "nvidia-smi lists no GPU")
        return _finish_cpu(Plan("cpu", reason), found, python_tag, pins)

    # cuda: which CUDA version the builds use
    plan = Plan("cuda", f"{OVERRIDE}=cuda" if wanted == "cuda" else
                f"{len(gpus)} NVIDIA GPU(s) visible", force_cuda="1")
    plan.gpus = [f"{g.name} ({g.compute_cap})" for g in gpus]
    wheel = torch_wheel_cuda(pins)
    driver = found.driver_cuda
    plan.driver = (f"{found.driver_version or '?'} (CUDA "
                   f"{'%d.%d' % driver if driver else 'version unknown'})")
    torch_version, vision_version = pins.get("torch"), pins.get("torchvision")
    if not torch_version or not vision_version or "jax" not in pins:
        raise PlanError("requirements/constraints.txt must pin torch, torchvision and jax")
    if driver is None:
        build = wheel
        plan.warnings.append(
            "nvidia-smi does not say which CUDA version the driver supports; assuming CUDA "
            f"{wheel[0]}.{wheel[1]} (driver 580 or newer for CUDA 13): the setup's final check "
            "tells if it does not")
    elif driver[0] >= wheel[0]:
        build = wheel
    elif driver[0] == 12:
        build = CUDA12_BUILD
        tag = "cu%d%d" % build
        plan.torch_index = PYTORCH_INDEX.format(major=build[0], minor=build[1])
        plan.torch_specs = [f"torch=={torch_version.split('+')[0]}+{tag}",
                            f"torchvision=={vision_version.split('+')[0]}+{tag}"]
        plan.drop_constraints = r"^(cuda-|nvidia-)"
        plan.warnings.append(
            f"the driver supports CUDA {driver[0]}.{driver[1]}, older than the CUDA "
            f"{wheel[0]}.{wheel[1]} of the torch wheel on PyPI: installing torch's CUDA "
            f"{build[0]}.{build[1]} build from {plan.torch_index} instead (a driver 580 or newer "
            "would take the same torch as every other machine)")
    else:
        raise PlanError(
            f"the NVIDIA driver {found.driver_version or ''} supports CUDA "
            f"{driver[0]}.{driver[1]}; "
            f"torch {torch_version} needs CUDA 12 (driver 525 or newer) or CUDA 13 (driver 580 or "
            f"newer). Update the driver, or set {OVERRIDE}=cpu to build the CPU environment")
    plan.cuda = "%d.%d" % build
    suffix = "" if build[0] >= 13 else f"-cu{build[0]}"
    plan.jax_spec = f"jax[cuda{build[0]}]=={pins['jax']}"
    # CUDA 13's nvidia-cuda-nvcc is a whole compiler; CUDA 12's nvidia-cuda-nvcc-cu12 only ptxas
    # and libnvvm (what jax needs), no nvcc: with a CUDA 12 build, mmcv needs the machine's nvcc
    names = (["nvidia-cuda-nvcc", "nvidia-cuda-crt", "nvidia-nvvm", "nvidia-cuda-cccl"]
             if build[0] >= 13 else ["nvidia-cuda-nvcc"])
    plan.cuda_packages = [f"{n}{suffix}=={plan.cuda}.*" for n in names]

    # which GPUs the kernels are compiled for
    if env.get("TORCH_CUDA_ARCH_LIST", "").strip():
        plan.arch_list = env["TORCH_CUDA_ARCH_LIST"].strip()
    else:
        oldest = MIN_COMPUTE_CAPABILITY.get(build[0], (0, 0))
        for g in gpus:
            if _cap(g.compute_cap) < oldest:
                raise PlanError(
                    f"GPU {g.index} ({g.name}) has compute capability {g.compute_cap}; CUDA "
                    f"{build[0]} builds only for {oldest[0]}.{oldest[1]} and newer. Hide it with "
                    f"CUDA_VISIBLE_DEVICES, or set {OVERRIDE}=cpu")
        caps = sorted({g.compute_cap for g in gpus}, key=_cap)
        plan.arch_list = ";".join(caps)

    # which nvcc builds mmcv
    rejected = []
    for kit in found.toolkits:
        if kit.version is None:
            rejected.append(f"{kit.describe()}: nvcc --version unreadable")
        elif kit.version[0] != build[0]:
            rejected.append(f"{kit.describe()}: CUDA {kit.version[0]}, torch's is {build[0]}")
        elif kit.missing_headers:
            rejected.append(f"{kit.describe()}: no {', '.join(kit.missing_headers)} in its "
                            "include/ (torch's CUDA headers include them)")
        else:
            plan.nvcc_source, plan.cuda_home = "system", kit.home
            plan.nvcc_reason = kit.describe()
            break
    if plan.nvcc_source is None and build[0] < 13:
        raise PlanError(
            f"the driver supports CUDA {driver[0]}.{driver[1]}, so torch is its CUDA {plan.cuda} "
            f"build, and mmcv's CUDA kernels need a CUDA {build[0]} toolkit (nvcc and the "
            "cuBLAS / cuSPARSE / cuSOLVER headers) on this machine: NVIDIA's pip package of nvcc "
            "for CUDA 12 holds no nvcc. "
            + ("Found: " + "; ".join(rejected) + ". " if rejected else "No CUDA toolkit found. ")
            + "Load or install one (e.g. `module load cuda/12.x`, or "
            "CUDA_HOME=/usr/local/cuda-12.x), or update the NVIDIA driver to 580 or newer "
            f"(CUDA 13: the setup then brings its own nvcc), or set {OVERRIDE}=cpu")
    if plan.nvcc_source is None:
        plan.nvcc_source = "pip"
        plan.nvcc_reason = (f"NVIDIA's pip packages ({plan.cuda_packages[0]}), in .venv/cuda"
                            + (" (not " + "; not ".join(rejected) + ")" if rejected else
                               " (the machine has no CUDA toolkit)"))
    plan.max_jobs = build_jobs(found.cpus, found.mem_available)
    plan.mmcv_key = (f"{python_tag or 'py'}-torch{torch_version.split('+')[0]}-cuda{plan.cuda}-"
                     f"sm{plan.arch_list.replace(';', '_').replace(' ', '_')}")
    return plan


def _finish_cpu(plan: Plan, found: Probe, python_tag: str, pins: Mapping[str, str]) -> Plan:
    plan.max_jobs = max(1, found.cpus)
    plan.mmcv_key = f"{python_tag or 'py'}-torch{pins.get('torch', '?')}-cpu"
    return plan


# ------------------------------------------------------------------------------------------------
# completion stamp
# ------------------------------------------------------------------------------------------------

def stamp_text(digest: str, plan: Plan) -> str:
    """The completion stamp: the hash of the requirement files and setup scripts, then the plan's
    accelerator line."""
    return f"{digest}\n{plan.stamp_line()}\n"


def stamp_status(recorded: "str | None", digest: str, plan: Plan) -> "tuple[str, str]":
    """(status, message) of a venv's stamp against what this machine's setup would write.

    Status: "ok" (nothing to do); "missing" (no stamp: set up); "stale" (the requirements or the
    setup changed: re-run the install steps); "moved" (built for another kind of machine: rebuild
    its machine-specific packages: torch, the jax CUDA plugin, mmcv's compiled ops).
    """
    if recorded is None:
        return "missing", "no completion stamp: setting up"
    lines = recorded.strip().splitlines()
    old_line = lines[1].strip() if len(lines) > 1 else None
    if old_line is not None and old_line != plan.stamp_line():
        return "moved", (f"this venv was built for {old_line}, but this machine calls for "
                         f"{plan.stamp_line()} ({plan.reason}): rebuilding its machine-specific "
                         "packages (torch build, "
                         "jax CUDA plugin, mmcv's compiled ops). To keep one venv per kind of "
                         "machine on a shared file system, give each its own JAXLOSS_VENV")
    if not lines or lines[0].strip() != digest or old_line is None:
        return "stale", "requirements or setup scripts changed since the last setup: updating"
    return "ok", ""


# ------------------------------------------------------------------------------------------------
# a CUDA_HOME from NVIDIA's pip packages
# ------------------------------------------------------------------------------------------------

def make_cuda_home(site_dirs: "Sequence[str | Path]", dest: "str | Path") -> Path:
    """Assemble a CUDA toolkit folder (CUDA_HOME) of links into NVIDIA's pip packages.

    The packages spread a toolkit over ``nvidia/<package>/{bin,include,lib}`` (CUDA 12) or share
    ``nvidia/cu13/`` (CUDA 13); torch's extension builder wants one ``bin/nvcc``, ``include/`` and
    ``lib64/`` with ``libcudart.so`` (the packages ship only ``libcudart.so.NN``). ``dest`` is
    replaced: ``bin`` and ``nvvm`` link to the nvcc package's, ``include/`` and ``lib64/`` hold a
    link per entry of every package's (the nvcc package's first, then in name order).

    Raises PlanError when no package has bin/nvcc or none has libcudart.
    """
    roots = []
    for site in site_dirs:
        base = Path(os.path.abspath(site)) / "nvidia"  # links must not depend on the cwd
        if base.is_dir():
            roots += sorted(p for p in base.iterdir() if p.is_dir())
    with_nvcc = [r for r in roots if (r / "bin" / "nvcc").is_file()]
    if not with_nvcc:
        raise PlanError(f"no NVIDIA pip package with bin/nvcc under "
                        f"{', '.join(map(str, site_dirs))}: the nvidia-cuda-nvcc install failed; "
                        "re-run scripts/setup.sh --force")
    nvcc_root = with_nvcc[0]
    roots.remove(nvcc_root)
    roots.insert(0, nvcc_root)
    dest = Path(os.path.abspath(dest))
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / "bin").symlink_to(nvcc_root / "bin", target_is_directory=True)
    if (nvcc_root / "nvvm").is_dir():
        (dest / "nvvm").symlink_to(nvcc_root / "nvvm", target_is_directory=True)
    for sub, out in (("include", "include"), ("lib", "lib64")):
        (dest / out).mkdir()
        for root in roots:
            folder = root / sub
            if not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                link = dest / out / entry.name
                if not link.exists() and not link.is_symlink():
                    link.symlink_to(entry, target_is_directory=entry.is_dir())
    cudart = sorted((dest / "lib64").glob("libcudart.so.*"))
    if not (dest / "lib64" / "libcudart.so").exists():
        if not cudart:
            raise PlanError("no libcudart.so.* in NVIDIA's pip packages: nvidia-cuda-runtime is "
                            "missing; re-run scripts/setup.sh --force")
        (dest / "lib64" / "libcudart.so").symlink_to(cudart[0].resolve())
    return dest


# ------------------------------------------------------------------------------------------------
# the final check of a built venv (runs in the venv: imports torch, jax, mmcv)
# ------------------------------------------------------------------------------------------------

def verify(kind: str, cuda: "str | None") -> "list[str]":
    """Check the venv is the plan's build; return what was checked (raise AssertionError with
    what is wrong). cuda: torch and jax run on the GPU, mmcv's nms and roi_align run on CUDA
    tensors and give the CPU results."""
    import mmcv.ops
    import torch
    from mmcv.ops import get_compiling_cuda_version

    built = get_compiling_cuda_version()
    if kind == "cpu":
        assert built == "not available", (
            f"mmcv's ops are a CUDA {built} build on a CPU setup: re-run scripts/setup.sh --force")
        return ["mmcv: CPU ops"]
    assert torch.version.cuda and torch.version.cuda.startswith(cuda), (
        f"torch {torch.__version__} is built for CUDA {torch.version.cuda}, the plan for {cuda}")
    assert torch.cuda.is_available(), (
        f"torch {torch.__version__} cannot use the GPU (torch.cuda.is_available() is False): "
        "the driver may be too old for its CUDA version; see nvidia-smi")
    assert built.startswith(cuda.split(".")[0] + "."), (
        f"mmcv's ops are built with CUDA '{built}', not {cuda}: re-run scripts/setup.sh --force")
    import jax

    backend = jax.default_backend()
    assert backend == "gpu", (
        f"jax runs on '{backend}', not the GPU: the jax CUDA plugin did not load (see the "
        "warnings jax printed above)")
    device = torch.device("cuda")
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 9, 10]],
                         dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    cpu_dets, cpu_keep = mmcv.ops.nms(boxes, scores, 0.5)
    gpu_dets, gpu_keep = mmcv.ops.nms(boxes.to(device), scores.to(device), 0.5)
    assert gpu_keep.device.type == "cuda" and gpu_keep.cpu().tolist() == cpu_keep.tolist(), (
        f"mmcv nms on CUDA kept {gpu_keep.cpu().tolist()}, on the CPU {cpu_keep.tolist()}")
    feats = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16) / 100
    rois = torch.tensor([[0, 1, 1, 9, 9], [1, 0.5, 2, 14, 12]], dtype=torch.float32)
    cpu_out = mmcv.ops.roi_align(feats, rois, (4, 4), 1.0, 2, "avg", True)
    gpu_out = mmcv.ops.roi_align(feats.to(device), rois.to(device), (4, 4), 1.0, 2, "avg", True)
    gap = float((gpu_out.cpu() - cpu_out).abs().max())
    assert gpu_out.device.type == "cuda" and gap < 1e-4, (
        f"mmcv roi_align on CUDA differs from the CPU by {gap}")
    x = jax.numpy.arange(8.0)
    assert float(jax.jit(lambda v: (v * v).sum())(x)) == 140.0
    return [f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}",
            f"jax {jax.__version__} on {jax.devices()[0].device_kind}",
            f"mmcv ops built with CUDA {built}: nms and roi_align on CUDA match the CPU"]


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------

def _shell(plan: Plan, status: "tuple[str, str] | None") -> str:
    values = {f"plan_{k}": v for k, v in asdict(plan).items()}
    values["plan_stamp_line"] = plan.stamp_line()
    values["plan_summary"] = plan.summary()
    if status is not None:
        values["stamp_status"], values["stamp_message"] = status
    lines = []
    for key, value in values.items():
        if isinstance(value, list):
            value = ("\n" if key == "plan_warnings" else " ").join(value)
        elif value is None:
            value = ""
        lines.append(f"{key}={shlex.quote(str(value))}")
    return "\n".join(lines)


def main(argv: "Sequence[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="probe this machine and print the setup's plan")
    p.add_argument("--constraints", required=True, help="requirements/constraints.txt")
    p.add_argument("--stamp", default=None, help="the venv's completion stamp file, to compare")
    p.add_argument("--hash", default="", help="the hash the stamp must hold")
    p.add_argument("--format", choices=["shell", "json", "text"], default="text")
    c = sub.add_parser("cuda-home", help="assemble a CUDA_HOME from NVIDIA's pip packages")
    c.add_argument("--site", action="append", required=True, help="a site-packages folder")
    c.add_argument("--dest", required=True)
    v = sub.add_parser("verify", help="check a built venv (run with the venv's python)")
    v.add_argument("--kind", choices=["cpu", "cuda"], required=True)
    v.add_argument("--cuda", default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "plan":
            tag = "cp%d%d" % sys.version_info[:2]
            plan = make_plan(probe(), read_pins(args.constraints), python_tag=tag)
            status = None
            if args.stamp is not None:
                stamp = Path(args.stamp)
                status = stamp_status(stamp.read_text() if stamp.is_file() else None,
                                      args.hash, plan)
            if args.format == "shell":
                print(_shell(plan, status))
            elif args.format == "json":
                print(json.dumps(dict(asdict(plan), stamp_line=plan.stamp_line(),
                                      stamp_status=status and status[0]), indent=2))
            else:
                print(plan.summary())
                for w in plan.warnings:
                    print(f"warning: {w}")
        elif args.command == "cuda-home":
            print(make_cuda_home(args.site, args.dest))
        else:
            for line in verify(args.kind, args.cuda):
                print(line)
    except PlanError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except AssertionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
