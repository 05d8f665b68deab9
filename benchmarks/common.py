"""Helpers shared by the benchmark scripts: machine description and timing."""

from __future__ import annotations

import os
import platform
import time
from typing import Callable


def machine() -> dict:
    """What the figures were measured on."""
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [d.device_kind for d in jax.devices()],
        "jax": jax.__version__,
        "python": platform.python_version(),
    }


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Best wall-clock seconds of ``repeats`` calls (the first call is not excluded: warm up first)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def raw_elementwise_rate(n: int = 1 << 22) -> float:
    """Elements per second of ``jnp.exp`` over a large float32 array (4M elements, best of 20
    calls): the machine's raw element-wise rate. Measure it before the workload allocates."""
    import jax
    import jax.numpy as jnp

    x = jnp.linspace(-5, 5, n, dtype=jnp.float32)
    f = jax.jit(jnp.exp)
    f(x).block_until_ready()
    return n / best_time(lambda: f(x).block_until_ready(), repeats=20)


def use_cores(count: int | None = None) -> list[int]:
    """Confine this process to ``count`` of the CPUs it may run on (default: all of them), so that
    every engine a benchmark compares runs on the same cores. Call it first thing, before JAX or
    torch start their thread pools: every thread the process has now is pinned, and threads started
    later inherit the pinning. Returns the CPU ids.

    Raises SystemExit, saying what to do, for a count below 1 or above the CPUs available.
    """
    if not hasattr(os, "sched_setaffinity"):
        total = os.cpu_count() or 1
        if count not in (None, total):
            raise SystemExit(f"--cores {count}: this platform cannot confine a process to some of "
                             f"its cores; run without --cores (all {total} cores)")
        return list(range(total))
    allowed = sorted(os.sched_getaffinity(0))
    if count is None:
        count = len(allowed)
    if not 1 <= count <= len(allowed):
        raise SystemExit(f"--cores {count}: this process may use 1 to {len(allowed)} cores "
                         f"(CPUs {format_cpus(allowed)})")
    cpus = allowed[:count]
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):  # a thread that has just ended
            pass
    return cpus


def format_cpus(cpus) -> str:
    """CPU ids as ranges: ``0-3,8``."""
    cpus = sorted(cpus)
    parts, start = [], None
    for k, c in enumerate(cpus):
        if start is None:
            start = c
        if k + 1 == len(cpus) or cpus[k + 1] != c + 1:
            parts.append(str(start) if start == c else f"{start}-{c}")
            start = None
    return ",".join(parts)


def node_counts(pop) -> dict:
    """Per genome, the operator nodes by what the batched engine does with them (int arrays [P]):

    * ``pointwise``: operator nodes that depend on an input and that the output reads: the engine
      evaluates them at every point;
    * ``constant``: operator nodes that depend on no input and that the output reads: the engine
      folds them once per genome (on K values in the ``cls`` branch, one value otherwise), not
      once per point;
    * ``dead``: operator nodes the output does not read (mutation makes them; the engine computes
      them all the same, but they are not useful work);
    * ``operators``: every operator node (the sum of the three).
    """
    import numpy as np

    m = node_masks(pop)
    op, live, depends = m["operator"], m["live"], m["depends"]
    return {"pointwise": np.sum(op & live & depends, 1),
            "constant": np.sum(op & live & ~depends, 1),
            "dead": np.sum(op & ~live, 1),
            "operators": np.sum(op, 1)}


def node_masks(pop) -> dict:
    """Per node (bool arrays [P, capacity]): ``operator`` (a used slot holding an operator),
    ``depends`` (the node depends on an input: the split the engine's own analysis makes,
    ``jaxloss.engine.batched.analyse``, checked by tests/benchmarks/test_counts.py) and ``live``
    (the output reads it, directly or through other nodes; the output itself is live)."""
    import numpy as np

    from jaxloss.genome.population import ARITY
    from jaxloss.space import ops

    op, lhs, rhs = (np.asarray(a) for a in (pop.ops, pop.lhs, pop.rhs))
    size = np.asarray(pop.size)
    P, cap = op.shape
    rows = np.arange(P)
    used = np.arange(cap)[None, :] < size[:, None]
    arity = np.where(used, ARITY[op], 0)
    is_input = np.zeros(len(ARITY), bool)
    is_input[[ops.code(n) for n in ops.INPUT_NAMES]] = True

    depends = np.zeros((P, cap), bool)
    for k in range(cap):
        a, b = lhs[:, k], rhs[:, k]
        depends[:, k] = used[:, k] & np.where(
            arity[:, k] == 0, is_input[op[:, k]],
            depends[rows, a] | ((arity[:, k] == 2) & depends[rows, b]))
    live = np.zeros((P, cap), bool)
    has = size > 0
    live[rows[has], size[has] - 1] = True
    for k in range(cap - 1, -1, -1):
        reads = live[:, k] & (arity[:, k] > 0)
        live[rows[reads], lhs[reads, k]] = True
        reads2 = live[:, k] & (arity[:, k] == 2)
        live[rows[reads2], rhs[reads2, k]] = True
    return {"operator": used & (arity > 0), "depends": depends, "live": live}


VALUES_RTOL = 1e-4
VALUES_ATOL_SCALE = 1e-6


def values_agreement(ours, theirs) -> dict:
    """How many candidates two engines give the same per-sample values (arrays [P, N]): the same
    non-finite entries (NaN where NaN, the same infinities), and finite entries within
    ``VALUES_RTOL * |ours| + VALUES_ATOL_SCALE * max |ours|`` (the candidate's largest finite
    |value|; the tolerance of benchmarks/gpu_check.py). Float32 engines that round differently
    drift apart where a function amplifies rounding: torch's sin against jaxloss' polynomial at
    large arguments (``sin(exp(x))`` at x = 10), so a few random candidates differ: the figure
    shows that both sides compute the same functions on the same points, not bit-for-bit
    equality."""
    import numpy as np

    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.ndim == 1:
        ours, theirs = ours[None], theirs[None]
    if ours.shape != theirs.shape:
        raise ValueError(f"the two engines' values have shapes {ours.shape} and {theirs.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        return _agreement(np, ours, theirs)


def _agreement(np, ours, theirs) -> dict:
    finite = np.isfinite(ours)
    same_nonfinite = np.all((finite == np.isfinite(theirs))
                            & (finite | (np.isnan(ours) == np.isnan(theirs)))
                            & (finite | np.isnan(ours) | (ours == theirs)), axis=1)
    scale = np.max(np.where(finite, np.abs(ours), 0.0), axis=1, keepdims=True)
    close = np.abs(np.where(finite, ours - theirs, 0.0)) <= (
        VALUES_RTOL * np.abs(np.where(finite, ours, 0.0)) + VALUES_ATOL_SCALE * scale)
    same = same_nonfinite & np.all(close, axis=1)
    return {"candidates": int(len(ours)), "same_values": int(same.sum()),
            "fraction": float(same.mean()) if len(ours) else 1.0,
            "tolerance": f"|a - b| <= {VALUES_RTOL:g}*|a| + {VALUES_ATOL_SCALE:g}*max|a| per "
                         "candidate; the same NaN and inf entries"}


def plural(count: int, noun: str) -> str:
    """``1 core``, ``2 cores``, ``2 processes``."""
    return f"{count:,} {noun}{'' if count == 1 else 'es' if noun.endswith('s') else 's'}"


def cores_line(c: dict) -> str:
    """The benchmarks' ``cores`` entry in words: the cores, and how each side uses them."""
    engine = (f"jaxloss on {plural(c['jaxloss_cpu_devices'], 'CPU device')}"
              if c["jaxloss_backend"] == "cpu" else f"jaxloss on {c['jaxloss_backend']}")
    eager = f"PyTorch eager in 1 process x {plural(c['torch_eager_threads'], 'thread')}"
    if c["torch_eager_processes"] > 1:
        eager += f", and in {c['torch_eager_processes']} processes x 1 thread"
    return (f"{plural(c['torch_eager'], 'core')} (CPUs {c['cpus']}) for every engine: {engine}; "
            f"{eager}")


def add_core_arguments(parser) -> None:
    """``--cores`` and ``--cpu-devices``: the same CPU cores for every engine of a benchmark."""
    parser.add_argument("--cores", type=int, default=None,
                        help="CPU cores for every engine alike (default: all this process may "
                             "use): the process is confined to them, jaxloss runs on that many "
                             "CPU devices, PyTorch eager on that many threads and processes")
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="CPU devices the engine spreads over (default: one per core of "
                             "--cores; 1: the engine on one core)")


def confine_to_cores(args) -> tuple[list[int], int]:
    """Confine this process to ``args.cores`` cores and put the engine on ``args.cpu_devices``
    CPU devices (default: one per core); call it before JAX or torch computes anything.
    Returns (the CPUs, the CPU devices)."""
    from jaxloss.engine.devices import use_cpu_cores

    cpus = use_cores(args.cores)
    return cpus, use_cpu_cores(args.cpu_devices if args.cpu_devices is not None else len(cpus))


def raw_speedups(ours: dict, eager: dict) -> dict:
    """jaxloss's rate against each PyTorch eager engine of ``eager`` (name → its result, with
    ``candidates_per_s``) on the same work: ``raw_speedup_vs_torch_eager`` against the faster
    (``raw_baseline``), and ``raw_speedup_by_baseline`` against each."""
    baseline = max(eager, key=lambda k: eager[k]["candidates_per_s"])
    return {"raw_speedup_vs_torch_eager":
            ours["candidates_per_s"] / eager[baseline]["candidates_per_s"],
            "raw_baseline": baseline,
            "raw_speedup_by_baseline": {k: ours["candidates_per_s"] / e["candidates_per_s"]
                                        for k, e in eager.items()}}


def terms_text(cores: dict) -> str:
    """How the engines shared the machine, for a headline: "2 cores each", or why not equal."""
    if not cores["equal_terms"]:
        return (f"NOT equal terms: jaxloss on {cores['jaxloss_backend']}, PyTorch on "
                f"{cores['torch_eager']} CPU cores")
    return f"{plural(cores['torch_eager'], 'core')} each" + (
        "" if cores["jaxloss_cpu_devices"] == cores["torch_eager"] else
        f" (jaxloss on {plural(cores['jaxloss_cpu_devices'], 'CPU device')})")
