"""Throughput of ``jaxloss.engine.evaluate`` against evaluating the same candidates one by one in PyTorch.

Workload: random 16-node candidates of the ``cls_binary`` branch (``jaxloss.genome.sample`` with
min_nodes = max_nodes = 16, seed 0), each evaluated on the same 2,048 detection-like points
(logits ~ N(0, 3²), labels in {0, 1}, IoUs uniform in [0, 1]). Values only (no gradients, no checks:
``benchmarks/filter_throughput.py`` times the full checks).

Engines:
  * jaxloss — the whole population in one compiled call (compilation timed separately);
  * torch eager — each loss's graph walked op by op with plain torch operators
    (``benchmarks/torch_eager.py``), one after another under no_grad.

Usage:
  python -m benchmarks.evaluate_throughput [--candidates 10000] [--points 2048] [--quick] [--json]
      [--cpu-devices D]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks.common import best_time, machine, raw_elementwise_rate
from jaxloss.engine.devices import use_cpu_cores


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
    jaxloss.evaluate(pop, **inputs)
    first = time.perf_counter() - start
    seconds = best_time(lambda: jaxloss.evaluate(pop, **inputs))
    return {"seconds": seconds, "compile_seconds": max(0.0, first - seconds),
            "candidates_per_s": len(pop) / seconds}


def time_torch_eager(pop, inputs, limit: int) -> dict:
    import torch

    from benchmarks.torch_eager import EagerLoss

    losses = pop.losses()[:limit]
    modules = [EagerLoss(loss) for loss in losses]
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        for m in modules[:20]:
            m(**tensors)
        start = time.perf_counter()
        for m in modules:
            m(**tensors)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "candidates": len(modules), "threads": torch.get_num_threads(),
            "candidates_per_s": len(modules) / seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=10_000, help="population size (10,000)")
    parser.add_argument("--points", type=int, default=2048, help="evaluation points (2,048)")
    parser.add_argument("--torch-candidates", type=int, default=None,
                        help="how many of them PyTorch eager evaluates (default: all)")
    parser.add_argument("--quick", action="store_true", help="1,000 candidates: under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="CPU devices the engine spreads over (default: one per core; 1: the "
                             "engine on one core, as before jaxloss 0.2)")
    args = parser.parse_args(argv)
    cpu_devices = use_cpu_cores(args.cpu_devices)
    if args.quick:
        args.candidates = min(args.candidates, 1000)
    raw = raw_elementwise_rate()
    pop, inputs = workload(args.candidates, args.points)
    operator_nodes = int(sum(np.count_nonzero(pop.ops[k, :pop.size[k]] >= 10)
                             for k in range(len(pop))))
    ours = time_jaxloss(pop, inputs)
    torch_eager = time_torch_eager(pop, inputs, args.torch_candidates or len(pop))
    useful = operator_nodes * args.points / ours["seconds"]
    result = {
        "benchmark": "evaluate_throughput",
        "workload": {"branch": "cls_binary", "candidates": len(pop), "nodes": 16,
                     "operator_nodes_mean": operator_nodes / len(pop), "points": args.points},
        "engines": {"jaxloss": ours, "torch_eager": torch_eager},
        "speedup_vs_torch_eager": ours["candidates_per_s"] / torch_eager["candidates_per_s"],
        "useful_node_evals_per_s": useful,
        "raw_elementwise_per_s": raw,
        "useful_fraction_of_raw": useful / raw,
        "cpu_devices": cpu_devices,
        "machine": machine(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"workload: {len(pop):,} random 16-node cls_binary candidates "
          f"({operator_nodes / len(pop):.1f} operator nodes each) on {args.points:,} points")
    print(f"  jaxloss.evaluate (one call): {ours['candidates_per_s']:>12,.0f} candidates/s "
          f"({ours['seconds']:.3f} s, compile {ours['compile_seconds']:.1f} s)")
    print(f"  PyTorch eager, one by one:   {torch_eager['candidates_per_s']:>12,.0f} candidates/s "
          f"({torch_eager['candidates']:,} candidates, {torch_eager['seconds']:.3f} s, "
          f"{torch_eager['threads']} threads)")
    print(f"  speed-up: {result['speedup_vs_torch_eager']:.1f}x")
    print(f"  useful operator-node evaluations: {useful / 1e6:,.0f} M/s = "
          f"{100 * result['useful_fraction_of_raw']:.0f}% of raw jnp.exp ({raw / 1e6:,.0f} M/s)")
    m = result["machine"]
    print(f"  machine: {m['cpu']}, {m['cores']} cores, JAX {m['jax']} on {m['jax_backend']}, "
          f"engine on {result['cpu_devices']} CPU device(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
