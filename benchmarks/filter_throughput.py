"""Throughput of the convergence-property filters, by engine, and the funnel on random candidates.

Workload (fixed): random 16-node candidates of the ``cls_binary`` branch (``jaxloss.genome.sample``,
min_nodes = max_nodes = 16, seed 0) and the full checks of ``jaxloss.check`` on the branch's 2,048
check points (values and dL/dx at every point; validity, monotonicity on the positive and negative
sweeps, flatness, gradient convergence). Engines, side by side in one process:

* ``jaxloss`` — ``jaxloss.check``: the whole population in one compiled call (screen on a subset,
  full grid for the screen's survivors; exactly the full grid's pass/fail verdicts);
* ``jaxloss_full_grid`` — the same with ``screen=False``: every candidate on all 2,048 points;
* ``torch_eager`` — what a DEAP + PyTorch implementation like the paper's does: per candidate, the
  graph walked op by op with plain torch operators (``benchmarks/torch_eager.py``) on the 2,048 points, ``torch.autograd.grad`` for dL/dx, the same
  measures and tolerances in NumPy;
* ``jax_jit_per_candidate`` — per candidate, a JAX function traced from the graph and compiled with
  ``jax.jit`` (value and ``jax.jvp``), then the same measures (compilation included: that is the
  cost of this approach in a search, where every candidate is new);
* ``numpy_loop`` — per candidate, the NumPy reference evaluator in float64, dL/dx by central
  differences (h = 1e-3), the same measures.

Printed: candidates/s per engine; the speed-up of jaxloss over PyTorch eager; useful operator-node
evaluations per second (operator nodes × points actually evaluated, values only) against the
machine's raw element-wise rate (``jnp.exp`` over 4M floats); the verdict agreement of each baseline
with jaxloss; and the funnel on 100,000 random candidates (sizes 3 to 16 nodes) with the mini
optimization simulation, next to the paper's "more than 99% filtered".

Usage: python -m benchmarks.filter_throughput [--quick] [--json] [--funnel N] [--cpu-devices D]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks.common import machine, raw_elementwise_rate
from jaxloss.engine.devices import use_cpu_cores

BRANCH = "cls_binary"


def _operator_nodes(pop) -> np.ndarray:
    return np.array([np.count_nonzero(pop.ops[k, :pop.size[k]] >= 10) for k in range(len(pop))])


def run_jaxloss(pop, screen: bool) -> dict:
    import jaxloss
    from jaxloss.filters.checks import SCREEN_STRIDE, _prepare

    start = time.perf_counter()
    jaxloss.check(pop, screen=screen)  # compile
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    verdicts = jaxloss.check(pop, screen=screen)
    seconds = time.perf_counter() - start
    full_points = _prepare(BRANCH, 1).leaves.shape[1]
    screen_points = _prepare(BRANCH, SCREEN_STRIDE).leaves.shape[1]
    ops = _operator_nodes(pop)
    if screen:
        points = screen_points + np.where(verdicts.screened, 0, full_points)
    else:
        points = np.full(len(pop), full_points)
    return {"seconds": seconds, "compile_seconds": max(0.0, compile_s - seconds),
            "candidates": len(pop), "candidates_per_s": len(pop) / seconds,
            "useful_node_evals_per_s": float(np.sum(ops * points)) / seconds,
            "reasons": verdicts.reasons}


def run_torch(pop, limit: int) -> dict:
    import torch

    from benchmarks.torch_eager import EagerLoss
    from jaxloss.filters.checks import grid_inputs, verdict_from_values

    inputs, _ = grid_inputs(BRANCH)
    x0 = torch.from_numpy(inputs["x"])
    y, w = torch.from_numpy(inputs["y"]), torch.from_numpy(inputs["w"])
    modules = [EagerLoss(loss) for loss in pop.losses()[:limit]]
    reasons = []
    start = time.perf_counter()
    for m in modules:
        x = x0.clone().requires_grad_(True)
        values = m(x=x, y=y, w=w)
        if values.requires_grad:
            (grad,) = torch.autograd.grad(values.sum(), x)
        else:
            grad = torch.zeros_like(x)
        reason, _ = verdict_from_values(values.detach().numpy(), grad.numpy(), BRANCH)
        reasons.append(reason)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "candidates": len(modules), "threads": torch.get_num_threads(),
            "candidates_per_s": len(modules) / seconds, "reasons": reasons}


def _jax_function(loss):
    """A plain JAX function of (x, y, w) traced from the loss graph (no batching)."""
    from jaxloss.engine.namespaces import JAX
    from jaxloss.space import ops

    def f(x, y, w):
        leaves = {ops.code("x"): x, ops.code("y"): y, ops.code("w"): w}
        for code, value in ops.CONSTANTS.items():
            leaves[code] = x * 0 + value
        vals = []
        for code, a, b in loss.graph:
            spec = ops.OPS[code]
            if spec.arity == 0:
                vals.append(leaves[code])
            else:
                vals.append(spec.fn(JAX, *([vals[a]] + ([vals[b]] if spec.arity == 2 else []))))
        return vals[-1]

    return f


def run_jax_jit(pop, limit: int) -> dict:
    import jax
    import jax.numpy as jnp

    from jaxloss.filters.checks import grid_inputs, verdict_from_values

    inputs, _ = grid_inputs(BRANCH)
    x, y, w = (jnp.asarray(inputs[k]) for k in "xyw")
    ones = jnp.ones_like(x)
    reasons = []
    losses = pop.losses()[:limit]
    start = time.perf_counter()
    for loss in losses:
        f = _jax_function(loss)
        both = jax.jit(lambda x, y, w, f=f: jax.jvp(lambda x: f(x, y, w), (x,), (ones,)))
        values, grad = both(x, y, w)
        reason, _ = verdict_from_values(np.asarray(values), np.asarray(grad), BRANCH)
        reasons.append(reason)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "candidates": len(losses), "candidates_per_s": len(losses) / seconds,
            "reasons": reasons}


def run_numpy(pop, limit: int) -> dict:
    from jaxloss.engine.reference import evaluate_one
    from jaxloss.filters.checks import grid_inputs, verdict_from_values

    inputs, _ = grid_inputs(BRANCH)
    h = 1e-3
    up, down = dict(inputs, x=inputs["x"] + h), dict(inputs, x=inputs["x"] - h)
    reasons = []
    losses = pop.losses()[:limit]
    start = time.perf_counter()
    for loss in losses:
        values = evaluate_one(loss, np.float64, **inputs)
        grad = (evaluate_one(loss, np.float64, **up) - evaluate_one(loss, np.float64, **down)) / (2 * h)
        reason, _ = verdict_from_values(values, grad, BRANCH)
        reasons.append(reason)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "candidates": len(losses), "candidates_per_s": len(losses) / seconds,
            "reasons": reasons}


def run_funnel(n: int) -> dict:
    import jaxloss
    from jaxloss.filters.funnel import funnel

    start = time.perf_counter()
    pop = jaxloss.sample(BRANCH, n, seed=1, max_nodes=16, min_nodes=3)
    sample_s = time.perf_counter() - start
    start = time.perf_counter()
    verdicts = jaxloss.check(pop, simulate=True)
    seconds = time.perf_counter() - start
    rows = funnel(verdicts)
    return {"candidates": n, "rows": rows, "passed": int(verdicts.passed.sum()),
            "filtered_fraction": 1 - verdicts.passed.mean(), "check_seconds": seconds,
            "sample_seconds": sample_s,
            "survivors": [str(l) for l in pop[np.flatnonzero(verdicts.passed)[:10]].losses()]}


def _agreement(ours: list, theirs: list) -> float:
    return float(np.mean([a == b for a, b in zip(ours, theirs)]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=10_000,
                        help="population checked by jaxloss (10,000)")
    parser.add_argument("--torch-candidates", type=int, default=1_000)
    parser.add_argument("--jit-candidates", type=int, default=20)
    parser.add_argument("--numpy-candidates", type=int, default=200)
    parser.add_argument("--funnel", type=int, default=100_000,
                        help="random candidates for the funnel (100,000; 0 to skip)")
    parser.add_argument("--quick", action="store_true", help="smaller workload: under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="CPU devices the engine spreads over (default: one per core; 1: the "
                             "engine on one core, as before jaxloss 0.2)")
    args = parser.parse_args(argv)
    cpu_devices = use_cpu_cores(args.cpu_devices)
    if args.quick:
        args.candidates, args.torch_candidates = 2_000, 200
        args.jit_candidates, args.numpy_candidates, args.funnel = 5, 50, 5_000

    import jaxloss

    raw = raw_elementwise_rate()
    pop = jaxloss.sample(BRANCH, args.candidates, seed=0, max_nodes=16, min_nodes=16)
    ours = run_jaxloss(pop, screen=True)
    ours_full = run_jaxloss(pop, screen=False)
    torch_eager = run_torch(pop, args.torch_candidates)
    jit = run_jax_jit(pop, args.jit_candidates)
    numpy_loop = run_numpy(pop, args.numpy_candidates)
    engines = {"jaxloss": ours, "jaxloss_full_grid": ours_full, "torch_eager": torch_eager,
               "jax_jit_per_candidate": jit, "numpy_loop": numpy_loop}
    for name, e in engines.items():
        if name != "jaxloss":
            e["verdict_agreement_with_jaxloss"] = _agreement(ours["reasons"], e["reasons"])
    result = {
        "benchmark": "filter_throughput",
        "workload": {"branch": BRANCH, "nodes": 16, "points": 2048,
                     "operator_nodes_mean": float(_operator_nodes(pop).mean())},
        "engines": {k: {kk: vv for kk, vv in v.items() if kk != "reasons"}
                    for k, v in engines.items()},
        "speedup_vs_torch_eager": ours["candidates_per_s"] / torch_eager["candidates_per_s"],
        "speedup_full_grid_vs_torch_eager":
            ours_full["candidates_per_s"] / torch_eager["candidates_per_s"],
        "useful_node_evals_per_s": ours["useful_node_evals_per_s"],
        "useful_node_evals_per_s_full_grid": ours_full["useful_node_evals_per_s"],
        "raw_elementwise_per_s": raw,
        "useful_fraction_of_raw": ours["useful_node_evals_per_s"] / raw,
        "useful_fraction_of_raw_full_grid": ours_full["useful_node_evals_per_s"] / raw,
        "cpu_devices": cpu_devices,
        "machine": machine(),
    }
    if args.funnel:
        result["funnel"] = run_funnel(args.funnel)
    if args.json:
        print(json.dumps(result, indent=2, default=float))
        return 0
    _print(result)
    return 0


def _print(r: dict) -> None:
    from jaxloss.filters.funnel import format_funnel

    w = r["workload"]
    print(f"workload: random 16-node {w['branch']} candidates ({w['operator_nodes_mean']:.1f} "
          f"operators each), full checks on {w['points']:,} points (values and dL/dx)")
    print(f"{'engine':24s} {'candidates':>10s} {'cand/s':>10s}  notes")
    for name, e in r["engines"].items():
        notes = []
        if "compile_seconds" in e:
            notes.append(f"compile {e['compile_seconds']:.1f} s (once)")
        if "verdict_agreement_with_jaxloss" in e:
            notes.append(f"same verdict as jaxloss: {100 * e['verdict_agreement_with_jaxloss']:.1f}%")
        if "threads" in e:
            notes.append(f"{e['threads']} threads")
        print(f"{name:24s} {e['candidates']:>10,} {e['candidates_per_s']:>10,.0f}  "
              + "; ".join(notes))
    print(f"speed-up over PyTorch eager: {r['speedup_vs_torch_eager']:.1f}x "
          f"(full grid for every candidate: {r['speedup_full_grid_vs_torch_eager']:.1f}x)")
    print(f"useful operator-node evaluations (operators x points evaluated, values only): "
          f"{r['useful_node_evals_per_s'] / 1e6:,.0f} M/s with the screen, "
          f"{r['useful_node_evals_per_s_full_grid'] / 1e6:,.0f} M/s on the full grid = "
          f"{100 * r['useful_fraction_of_raw']:.0f}% / "
          f"{100 * r['useful_fraction_of_raw_full_grid']:.0f}% of raw jnp.exp "
          f"({r['raw_elementwise_per_s'] / 1e6:,.0f} M/s)")
    if "funnel" in r:
        f = r["funnel"]
        print(f"\nfunnel on {f['candidates']:,} random {BRANCH} candidates (3 to 16 nodes), "
              f"check + simulation in {f['check_seconds']:.1f} s:")
        print(format_funnel(f["rows"]))
        print(f"filtered: {100 * f['filtered_fraction']:.3f}% (paper: more than 99%); "
              f"passed: {f['passed']:,}")
        for s in f["survivors"][:5]:
            print(f"  e.g. {s}")
    m = r["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, JAX {m['jax']} on {m['jax_backend']}, "
          f"engine on {r['cpu_devices']} CPU device(s)")


if __name__ == "__main__":
    sys.exit(main())
