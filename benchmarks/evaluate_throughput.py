"""Throughput of ``jaxloss.engine.evaluate`` against evaluating the same candidates one by one in PyTorch.

Workload: random 16-node candidates of the ``cls_binary`` branch (``jaxloss.genome.sample`` with
min_nodes = max_nodes = 16, seed 0), each evaluated on the same 2,048 detection-like points
(logits ~ N(0, 3²), labels in {0, 1}, IoUs uniform in [0, 1]). Values only (no gradients, no checks:
``benchmarks/filter_throughput.py`` times the full checks). Every engine runs in this one process,
confined to the same ``--cores`` CPUs (default: all this process may use).

Engines:
  * jaxloss — the whole population in one compiled call (compilation timed separately), on one
    CPU device per core;
  * jaxloss_same_candidates — only when ``--torch-candidates`` is below ``--candidates``: the same
    on exactly the candidates PyTorch evaluates;
  * torch eager — each loss's graph walked op by op with plain torch operators
    (``benchmarks/torch_eager.py``), one after another under no_grad: in one process with
    ``torch.set_num_threads(cores)`` (``torch_eager``), and on ``cores`` processes of one thread,
    the candidates dealt out among them (``torch_eager_processes``, with 2 or more cores).

Printed: the raw engine against the faster PyTorch eager engine, same candidates, same points,
same cores (JSON ``raw_speedup_vs_torch_eager``, ``cores``, and ``same_work``: the counts and
PyTorch's values against jaxloss'); useful node evaluations per second against the raw
``jnp.exp`` rate on the same cores. Useful: per genome, the operator nodes evaluated at every point
(those that depend on an input and that the output reads) × points, plus the constant operator
nodes once per genome (the engine folds them once, not per point). ``speedup_vs_torch_eager`` keeps
its old meaning (against single-process ``torch_eager``); ``useful_node_evals_per_s`` its name with
the corrected counting (the former, every operator node × every point, is
``operator_nodes_x_points_per_s``).

Usage:
  python -m benchmarks.evaluate_throughput [--candidates 10000] [--points 2048] [--quick] [--json]
      [--cores N] [--cpu-devices D] [--torch-candidates M]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks.common import (add_core_arguments, best_time, confine_to_cores, cores_line,
                               format_cpus, machine, node_counts, plural, raw_elementwise_rate,
                               raw_speedups, terms_text, values_agreement)


def workload(candidates: int, points: int, seed: int = 0):
    import jaxloss

    rng = np.random.default_rng(seed)
    inputs = dict(x=(rng.normal(size=points) * 3).astype(np.float32),
                  y=rng.integers(0, 2, points).astype(np.float32),
                  w=rng.uniform(0, 1, points).astype(np.float32))
    pop = jaxloss.sample("cls_binary", candidates, seed=seed, max_nodes=16, min_nodes=16)
    return pop, inputs


def time_jaxloss(pop, inputs) -> dict:
    import jaxloss

    start = time.perf_counter()
    values = jaxloss.evaluate(pop, **inputs)
    first = time.perf_counter() - start
    seconds = best_time(lambda: jaxloss.evaluate(pop, **inputs))
    return {"seconds": seconds, "compile_seconds": max(0.0, first - seconds),
            "candidates": len(pop), "candidates_per_s": len(pop) / seconds,
            "values": np.asarray(values)}


def time_torch_eager(pop, inputs, limit: int | None = None, cpus: list[int] | None = None) -> dict:
    """PyTorch eager in this process with ``torch.set_num_threads(len(cpus))`` (default: torch's
    own thread count), on the first ``limit`` candidates (None: all)."""
    import torch

    from benchmarks.torch_eager import values_loop

    if cpus is not None:
        torch.set_num_threads(len(cpus))
    losses = pop.losses()[:limit]
    out = values_loop(losses, inputs, keep_values=True)
    return {"seconds": out["seconds"], "candidates": len(losses), "points": out["points"],
            "threads": torch.get_num_threads(), "processes": 1,
            "cores": len(cpus) if cpus is not None else None,
            "candidates_per_s": len(losses) / out["seconds"], "values": out["values"]}


def time_torch_processes(pop, inputs, cpus: list[int]) -> dict:
    """PyTorch eager on ``len(cpus)`` processes of one thread, one per CPU."""
    from benchmarks.torch_eager import in_processes

    out = in_processes("values", pop, inputs, cpus, keep_values=True)
    return {"seconds": out["seconds"], "candidates": len(pop), "points": out["points"],
            "threads": 1, "processes": out["processes"], "cores": len(cpus),
            "candidates_per_s": len(pop) / out["seconds"], "values": out["values"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=10_000, help="population size (10,000)")
    parser.add_argument("--points", type=int, default=2048, help="evaluation points (2,048)")
    parser.add_argument("--torch-candidates", type=int, default=None,
                        help="how many of them PyTorch eager evaluates (default: all; fewer adds "
                             "a jaxloss run on just those, for the comparison)")
    parser.add_argument("--quick", action="store_true", help="1,000 candidates: under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_core_arguments(parser)
    args = parser.parse_args(argv)
    cpus, cpu_devices = confine_to_cores(args)  # before JAX and torch start any thread
    if args.quick:
        args.candidates = min(args.candidates, 1000)
    import jax

    raw = raw_elementwise_rate()
    pop, inputs = workload(args.candidates, args.points)
    counts = node_counts(pop)
    torch_n = min(args.torch_candidates or len(pop), len(pop))
    same_pop = pop if torch_n == len(pop) else pop[np.arange(torch_n)]
    ours = time_jaxloss(pop, inputs)
    engines = {"jaxloss": ours}
    same = ours
    if same_pop is not pop:
        same = engines["jaxloss_same_candidates"] = time_jaxloss(same_pop, inputs)
    torch_eager = engines["torch_eager"] = time_torch_eager(same_pop, inputs, None, cpus)
    if len(cpus) > 1:
        engines["torch_eager_processes"] = time_torch_processes(same_pop, inputs, cpus)
    for name, e in engines.items():
        e.setdefault("cores", len(cpus))
        if name.startswith("jaxloss"):
            e["cpu_devices"] = cpu_devices
            e["points"] = args.points

    eager = {k: engines[k] for k in ("torch_eager", "torch_eager_processes") if k in engines}
    for name, e in eager.items():
        if (e["candidates"], e["points"]) != (same["candidates"], args.points):
            raise AssertionError(f"{name} evaluated {e['candidates']} candidates on {e['points']} "
                                 f"points, jaxloss {same['candidates']} on {args.points}")
    same_work = {"candidates": same["candidates"], "points": args.points,
                 "values_vs_jaxloss": {k: values_agreement(same["values"], e["values"])
                                       for k, e in eager.items()}}
    backend = jax.default_backend()
    cores = {"jaxloss": len(cpus) if backend == "cpu" else None,
             "jaxloss_backend": backend, "jaxloss_cpu_devices": cpu_devices,
             "torch_eager": len(cpus), "torch_eager_threads": torch_eager["threads"],
             "torch_eager_processes": engines.get("torch_eager_processes", {}).get("processes", 1),
             "cpus": format_cpus(cpus), "equal_terms": backend == "cpu"}
    pointwise, constant = int(counts["pointwise"].sum()), int(counts["constant"].sum())
    useful = (pointwise * args.points + constant) / ours["seconds"]
    result = {
        "benchmark": "evaluate_throughput",
        "workload": {"branch": "cls_binary", "candidates": len(pop), "nodes": 16,
                     "torch_candidates": torch_n,
                     "operator_nodes_mean": float(counts["operators"].mean()),
                     "pointwise_nodes_mean": pointwise / len(pop),
                     "constant_nodes_mean": constant / len(pop),
                     "dead_nodes_mean": float(counts["dead"].mean()), "points": args.points},
        "cores": cores,
        "engines": {k: {kk: vv for kk, vv in v.items() if kk != "values"}
                    for k, v in engines.items()},
        **raw_speedups(same, eager),
        "same_work": same_work,
        "speedup_vs_torch_eager": same["candidates_per_s"] / torch_eager["candidates_per_s"],
        "useful_node_evals_per_s": useful,
        "useful_node_evals_counting": USEFUL_COUNTING,
        "operator_nodes_x_points_per_s":
            float(counts["operators"].sum()) * args.points / ours["seconds"],
        "raw_elementwise_per_s": raw,
        "useful_fraction_of_raw": useful / raw,
        "cpu_devices": cpu_devices,
        "machine": machine(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _print(result)
    return 0


USEFUL_COUNTING = ("values only; per genome: operator nodes that depend on an input and that the "
                   "output reads x points, plus constant operator nodes once per genome (the "
                   "engine folds them once, not per point)")


def _print(r: dict) -> None:
    w, c, e = r["workload"], r["cores"], r["engines"]
    ours = e["jaxloss"]
    same = e.get("jaxloss_same_candidates", ours)
    print(f"workload: {w['candidates']:,} random 16-node cls_binary candidates, "
          f"{w['operator_nodes_mean']:.1f} operator nodes each: {w['pointwise_nodes_mean']:.1f} "
          f"evaluated at every point, {w['constant_nodes_mean']:.1f} constants folded once per "
          f"genome; {w['points']:,} points")
    print(f"  cores: {cores_line(c)}")
    print(f"  jaxloss.evaluate (one call): {ours['candidates_per_s']:>12,.0f} candidates/s "
          f"({ours['candidates']:,} candidates, {ours['seconds']:.3f} s, compile "
          f"{ours['compile_seconds']:.1f} s)")
    if same is not ours:
        print(f"  ... on PyTorch's candidates: {same['candidates_per_s']:>12,.0f} candidates/s "
              f"({same['candidates']:,} candidates, {same['seconds']:.3f} s)")
    for name in ("torch_eager", "torch_eager_processes"):
        if name in e:
            t = e[name]
            label = (f"PyTorch eager, 1 process x {plural(t['threads'], 'thread')}:"
                     if t["processes"] == 1
                     else f"PyTorch eager, {t['processes']} processes x 1 thread:")
            print(f"  {label:42s} {t['candidates_per_s']:>12,.0f} candidates/s "
                  f"({t['candidates']:,} candidates, {t['seconds']:.3f} s)")
    terms = terms_text(c)
    s = r["same_work"]
    print(f"  raw engine vs PyTorch eager (values only, same {s['candidates']:,} candidates x "
          f"{s['points']:,} points, {terms}): {r['raw_speedup_vs_torch_eager']:.1f}x "
          f"(vs {r['raw_baseline']}" + (", the faster PyTorch eager)"
                                          if len(r["raw_speedup_by_baseline"]) > 1 else ")"))
    print("  same work: PyTorch's values match jaxloss' for "
          + ", ".join(f"{a['same_values']:,} of {a['candidates']:,} candidates ({k})"
                      for k, a in s["values_vs_jaxloss"].items()))
    print(f"  useful node evaluations (nodes evaluated at every point x points, constant nodes "
          f"once per genome): "
          f"{r['useful_node_evals_per_s'] / 1e6:,.0f} M/s = "
          f"{100 * r['useful_fraction_of_raw']:.0f}% of raw jnp.exp "
          f"({r['raw_elementwise_per_s'] / 1e6:,.0f} M/s on the same cores)")
    m = r["machine"]
    print(f"  machine: {m['cpu']}, {m['cores']} cores, JAX {m['jax']} on {m['jax_backend']}, "
          f"engine on {r['cpu_devices']} CPU device(s)")


if __name__ == "__main__":
    sys.exit(main())
