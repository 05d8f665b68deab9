"""Throughput of the convergence-property filters, by engine, and the funnel on random candidates.

Workload (fixed): random 16-node candidates of the ``cls_binary`` branch (``jaxloss.genome.sample``,
min_nodes = max_nodes = 16, seed 0) and the full checks of ``jaxloss.check`` on the branch's 2,048
check points (values and dL/dx at every point; validity, monotonicity on the positive and negative
sweeps, flatness, gradient convergence). Every engine runs in this one process, confined to the
same ``--cores`` CPUs (default: all this process may use). Engines:

* ``jaxloss`` — ``jaxloss.check``: the whole population in one compiled call (screen on a subset,
  full grid for the screen's survivors; exactly the full grid's pass/fail verdicts);
* ``jaxloss_full_grid`` — the same with ``screen=False``: every candidate on all 2,048 points;
* ``jaxloss_full_grid_same_candidates`` — only when ``--torch-candidates`` is below
  ``--candidates``: the full grid on exactly the candidates PyTorch checks;
* ``torch_eager`` — what a DEAP + PyTorch implementation like the paper's does: per candidate, the
  graph walked op by op with plain torch operators (``benchmarks/torch_eager.py``) on the 2,048
  points, ``torch.autograd.grad`` for dL/dx, the same measures and tolerances in NumPy; one
  process, ``torch.set_num_threads(cores)``;
* ``torch_eager_processes`` — the same on ``cores`` processes of one thread, one per core, the
  candidates dealt out among them (only with 2 or more cores);
* ``jax_jit_per_candidate`` — per candidate, a JAX function traced from the graph and compiled with
  ``jax.jit`` (value and ``jax.jvp``), then the same measures (compilation included: that is the
  cost of this approach in a search, where every candidate is new);
* ``numpy_loop`` — per candidate, the NumPy reference evaluator in float64, dL/dx by central
  differences (h = 1e-3), the same measures.

Printed, as separate figures (never multiplied into one):

(a) the raw engine against PyTorch eager: ``jaxloss.check(screen=False)`` against the faster of the
    two PyTorch eager engines, on the same full grid, the same candidates, the same points and the
    same cores (JSON ``raw_speedup_vs_torch_eager``; both sides' core counts under ``cores``; the
    evidence that both did the same work under ``same_work``: candidate and point counts, the
    per-sample values of PyTorch against ``jaxloss.evaluate`` on the grid, the verdicts);
(b) the screen's own effect: ``jaxloss.check`` against ``jaxloss.check(screen=False)``, same
    candidates, same cores (``screen_speedup``). The screen is an algorithmic shortcut (every 8th
    point first, the full grid only for its survivors), not engine speed.

Also: useful node evaluations per second against the machine's raw element-wise rate
(``jnp.exp`` over 4M floats, in this process on the same cores). Useful: per genome, the operator
nodes the engine evaluates at every point (those that depend on an input and that the output
reads) × the points evaluated, plus the constant operator nodes (no input below them) once per
genome and pass, since the engine folds them once per genome instead of per point; values only
(the forward-mode derivatives computed alongside are not counted). Then the verdict agreement of
each baseline, and the funnel on 100,000 random candidates (sizes 3 to 16 nodes) with the mini
optimization simulation, next to the paper's "more than 99% filtered".

JSON keys kept for one release with their old meaning, not printed: ``speedup_vs_torch_eager``
(``jaxloss`` with the screen against single-process ``torch_eager``: it mixes the screen into an
engine comparison; use ``raw_speedup_vs_torch_eager`` and ``screen_speedup``) and
``speedup_full_grid_vs_torch_eager`` (the full grid against single-process ``torch_eager``, now on
the same candidates). ``useful_node_evals_per_s`` keeps its name with the corrected counting; the
former counting (every operator node × every point) is ``operator_nodes_x_points_per_s``.

Usage: python -m benchmarks.filter_throughput [--quick] [--json] [--cores N] [--funnel N]
    [--cpu-devices D] [--candidates N] [--torch-candidates M] [--jit-candidates J]
    [--numpy-candidates K]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks.common import (add_core_arguments, confine_to_cores, cores_line, format_cpus,
                               machine, node_counts, plural, raw_elementwise_rate, raw_speedups,
                               terms_text, values_agreement)

BRANCH = "cls_binary"


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
    counts = node_counts(pop)
    if screen:
        full = ~np.asarray(verdicts.screened)  # the screen's survivors: the full grid as well
        points = screen_points + np.where(full, full_points, 0)
        passes = 1 + full.astype(int)
    else:
        points = np.full(len(pop), full_points)
        passes = np.ones(len(pop), int)
    useful = float(np.sum(counts["pointwise"] * points + counts["constant"] * passes))
    out = {"seconds": seconds, "compile_seconds": max(0.0, compile_s - seconds),
           "candidates": len(pop), "candidates_per_s": len(pop) / seconds,
           "points": int(full_points),
           "useful_node_evals_per_s": useful / seconds,
           "operator_nodes_x_points_per_s": float(np.sum(counts["operators"] * points)) / seconds,
           "reasons": verdicts.reasons}
    if screen:
        out["screen_points"] = int(screen_points)
        out["full_grid_candidates"] = int(np.sum(passes == 2))
    return out


def run_torch(pop, limit: int | None, cpus: list[int] | None = None) -> dict:
    """PyTorch eager in this process with ``torch.set_num_threads(len(cpus))`` (default: torch's
    own thread count), on the first ``limit`` candidates (None: all)."""
    import torch

    from benchmarks.torch_eager import check_loop
    from jaxloss.filters.checks import grid_inputs

    if cpus is not None:
        torch.set_num_threads(len(cpus))
    inputs, _ = grid_inputs(BRANCH)
    losses = pop.losses()[:limit]
    out = check_loop(losses, inputs, BRANCH, keep_values=True)
    return {"seconds": out["seconds"], "candidates": len(losses), "points": out["points"],
            "threads": torch.get_num_threads(), "processes": 1,
            "cores": len(cpus) if cpus is not None else None,
            "candidates_per_s": len(losses) / out["seconds"], "reasons": out["reasons"],
            "values": out["values"]}


def run_torch_processes(pop, cpus: list[int]) -> dict:
    """PyTorch eager on ``len(cpus)`` processes of one thread, one per CPU."""
    from benchmarks.torch_eager import in_processes
    from jaxloss.filters.checks import grid_inputs

    inputs, _ = grid_inputs(BRANCH)
    out = in_processes("checks", pop, inputs, cpus, branch=BRANCH)
    return {"seconds": out["seconds"], "candidates": len(pop), "points": out["points"],
            "threads": 1, "processes": out["processes"], "cores": len(cpus),
            "candidates_per_s": len(pop) / out["seconds"], "reasons": out["reasons"]}


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
    parser.add_argument("--torch-candidates", type=int, default=None,
                        help="how many of them PyTorch eager checks (default: all; fewer adds a "
                             "jaxloss full-grid run on just those, for the raw comparison)")
    parser.add_argument("--jit-candidates", type=int, default=20)
    parser.add_argument("--numpy-candidates", type=int, default=200)
    parser.add_argument("--funnel", type=int, default=100_000,
                        help="random candidates for the funnel (100,000; 0 to skip)")
    parser.add_argument("--quick", action="store_true", help="smaller workload: under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_core_arguments(parser)
    args = parser.parse_args(argv)
    cpus, cpu_devices = confine_to_cores(args)  # before JAX and torch start any thread
    if args.quick:
        args.candidates, args.torch_candidates = 2_000, None
        args.jit_candidates, args.numpy_candidates, args.funnel = 5, 50, 5_000

    import jaxloss

    raw = raw_elementwise_rate()
    pop = jaxloss.sample(BRANCH, args.candidates, seed=0, max_nodes=16, min_nodes=16)
    torch_n = min(args.torch_candidates or len(pop), len(pop))
    same_pop = pop if torch_n == len(pop) else pop[np.arange(torch_n)]
    ours = run_jaxloss(pop, screen=True)
    ours_full = run_jaxloss(pop, screen=False)
    engines = {"jaxloss": ours, "jaxloss_full_grid": ours_full}
    same_full = ours_full
    if same_pop is not pop:
        same_full = engines["jaxloss_full_grid_same_candidates"] = run_jaxloss(same_pop, False)
    torch_eager = engines["torch_eager"] = run_torch(same_pop, None, cpus)
    if len(cpus) > 1:
        engines["torch_eager_processes"] = run_torch_processes(same_pop, cpus)
    engines["jax_jit_per_candidate"] = run_jax_jit(pop, args.jit_candidates)
    engines["numpy_loop"] = run_numpy(pop, args.numpy_candidates)
    for name, e in engines.items():
        if name != "jaxloss":
            e["verdict_agreement_with_jaxloss"] = _agreement(ours["reasons"], e["reasons"])
        if name.startswith(("torch", "jax_jit", "numpy")):
            e["verdict_agreement_with_full_grid"] = _agreement(ours_full["reasons"], e["reasons"])
        e.setdefault("cores", len(cpus))
        if name.startswith("jaxloss"):
            e["cpu_devices"] = cpu_devices

    # (a) the raw engine against the faster PyTorch eager engine: same grid, candidates, cores
    eager = {k: engines[k] for k in ("torch_eager", "torch_eager_processes") if k in engines}
    same_work = _same_work(same_pop, same_full, eager, torch_eager.pop("values"))
    backend = jaxloss_backend()
    cores = {"jaxloss": len(cpus) if backend == "cpu" else None,
             "jaxloss_backend": backend, "jaxloss_cpu_devices": cpu_devices,
             "torch_eager": len(cpus), "torch_eager_threads": torch_eager["threads"],
             "torch_eager_processes": engines.get("torch_eager_processes", {}).get("processes", 1),
             "cpus": format_cpus(cpus),
             "equal_terms": backend == "cpu"}
    counts = node_counts(pop)
    result = {
        "benchmark": "filter_throughput",
        "workload": {"branch": BRANCH, "nodes": 16, "points": ours_full["points"],
                     "candidates": len(pop), "torch_candidates": torch_n,
                     "operator_nodes_mean": float(counts["operators"].mean()),
                     "pointwise_nodes_mean": float(counts["pointwise"].mean()),
                     "constant_nodes_mean": float(counts["constant"].mean()),
                     "dead_nodes_mean": float(counts["dead"].mean())},
        "cores": cores,
        "engines": {k: {kk: vv for kk, vv in v.items() if kk not in ("reasons", "values")}
                    for k, v in engines.items()},
        **raw_speedups(same_full, eager),
        "screen_speedup": ours["candidates_per_s"] / ours_full["candidates_per_s"],
        "screen_full_grid_candidates": ours["full_grid_candidates"],
        "same_work": same_work,
        # kept for one release (see the module docstring): the screen mixed into the comparison
        "speedup_vs_torch_eager": ours["candidates_per_s"] / torch_eager["candidates_per_s"],
        "speedup_full_grid_vs_torch_eager":
            same_full["candidates_per_s"] / torch_eager["candidates_per_s"],
        "useful_node_evals_per_s": ours["useful_node_evals_per_s"],
        "useful_node_evals_per_s_full_grid": ours_full["useful_node_evals_per_s"],
        "useful_node_evals_counting": USEFUL_COUNTING,
        "operator_nodes_x_points_per_s": ours["operator_nodes_x_points_per_s"],
        "operator_nodes_x_points_per_s_full_grid": ours_full["operator_nodes_x_points_per_s"],
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


USEFUL_COUNTING = ("values only; per genome: operator nodes that depend on an input and that the "
                   "output reads x points evaluated, plus constant operator nodes once per genome "
                   "and pass (the engine folds them once, not per point)")


def jaxloss_backend() -> str:
    import jax

    return jax.default_backend()


def _same_work(pop, full: dict, eager: dict, torch_values: np.ndarray) -> dict:
    """Evidence that the raw comparison's two sides did the same work: candidate and point counts
    (asserted equal), PyTorch's per-sample values against ``jaxloss.evaluate`` on the same grid,
    and the verdicts (PyTorch's against the full grid's; the PyTorch engines against each
    other)."""
    import jaxloss
    from jaxloss.filters.checks import grid_inputs

    for name, e in eager.items():
        if (e["candidates"], e["points"]) != (full["candidates"], full["points"]):
            raise AssertionError(f"{name} checked {e['candidates']} candidates on {e['points']} "
                                 f"points, jaxloss {full['candidates']} on {full['points']}")
    inputs, _ = grid_inputs(BRANCH)
    values = np.asarray(jaxloss.evaluate(pop, **inputs))
    out = {"candidates": full["candidates"], "points": full["points"],
           "values_vs_jaxloss_evaluate": values_agreement(values, torch_values),
           "verdict_agreement_with_full_grid": {
               k: _agreement(full["reasons"], e["reasons"]) for k, e in eager.items()}}
    if "torch_eager_processes" in eager:
        out["torch_engines_same_verdicts"] = (eager["torch_eager"]["reasons"]
                                              == eager["torch_eager_processes"]["reasons"])
    return out


def _print(r: dict) -> None:
    from jaxloss.filters.funnel import format_funnel

    w, c, same = r["workload"], r["cores"], r["same_work"]
    print(f"workload: {w['candidates']:,} random 16-node {w['branch']} candidates, "
          f"{w['operator_nodes_mean']:.1f} operator nodes each: {w['pointwise_nodes_mean']:.1f} "
          f"evaluated at every point, {w['constant_nodes_mean']:.1f} constants folded once per "
          f"genome; full checks on {w['points']:,} points (values and dL/dx)")
    print(f"cores: {cores_line(c)}")
    print(f"{'engine':34s} {'candidates':>10s} {'cand/s':>10s}  notes")
    for name, e in r["engines"].items():
        notes = []
        if "compile_seconds" in e:
            notes.append(f"compile {e['compile_seconds']:.1f} s (once)")
        if "full_grid_candidates" in e:
            notes.append(f"{e['full_grid_candidates']:,} past the screen")
        if "processes" in e:
            notes.append(f"{plural(e['processes'], 'process')} x {plural(e['threads'], 'thread')}")
        if "verdict_agreement_with_full_grid" in e:
            notes.append("same verdict as the full grid: "
                         f"{100 * e['verdict_agreement_with_full_grid']:.1f}%")
        elif "verdict_agreement_with_jaxloss" in e:
            notes.append("same verdict as jaxloss: "
                         f"{100 * e['verdict_agreement_with_jaxloss']:.1f}%")
        print(f"{name:34s} {e['candidates']:>10,} {e['candidates_per_s']:>10,.0f}  "
              + "; ".join(notes))
    full = r["engines"].get("jaxloss_full_grid_same_candidates", r["engines"]["jaxloss_full_grid"])
    base = r["engines"][r["raw_baseline"]]
    terms = terms_text(c)
    print(f"(a) raw engine vs PyTorch eager, full grid, same {same['candidates']:,} candidates x "
          f"{same['points']:,} points, {terms}: {r['raw_speedup_vs_torch_eager']:.1f}x "
          f"(jaxloss.check(screen=False) {full['candidates_per_s']:,.0f} cand/s vs "
          f"{r['raw_baseline']} {base['candidates_per_s']:,.0f} cand/s"
          + (", the faster PyTorch eager)" if len(r["raw_speedup_by_baseline"]) > 1 else ")"))
    v = same["values_vs_jaxloss_evaluate"]
    print(f"    same work: PyTorch's values match jaxloss.evaluate's for {v['same_values']:,} of "
          f"{v['candidates']:,} candidates; verdicts as the full grid's: "
          + ", ".join(f"{k} {100 * a:.1f}%"
                      for k, a in same["verdict_agreement_with_full_grid"].items()))
    print(f"(b) the screen, separately: jaxloss.check vs jaxloss.check(screen=False), same "
          f"{w['candidates']:,} candidates, same cores: {r['screen_speedup']:.1f}x "
          f"({r['screen_full_grid_candidates']:,} of {w['candidates']:,} reach the full grid; "
          f"the same pass/fail verdicts)")
    print(f"useful node evaluations (values; nodes evaluated at every point x points, constant "
          f"nodes once per genome): full grid "
          f"{r['useful_node_evals_per_s_full_grid'] / 1e6:,.0f} M/s = "
          f"{100 * r['useful_fraction_of_raw_full_grid']:.0f}% of raw jnp.exp "
          f"({r['raw_elementwise_per_s'] / 1e6:,.0f} M/s on the same cores); with the screen "
          f"{r['useful_node_evals_per_s'] / 1e6:,.0f} M/s = "
          f"{100 * r['useful_fraction_of_raw']:.0f}%")
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
