"""Search efficiency on the JAX stages: random search, vanilla evolution and the full funnel.

The shape of the paper's Tables 2 and 5, with the mini optimization simulation as the expensive,
fitness-giving stage (the detector stages are not in this comparison): the same budget (population
× generations, seed) for

* ``random``  — fresh random candidates every generation, the full funnel;
* ``vanilla`` — evolution from the initial loss with only the validity check before the simulation;
* ``cse``     — evolution with the full funnel (validity, convergence properties, simulation).

Printed per strategy: candidates entering each stage (summed over generations), distinct functions
simulated (the expensive evaluations), wall-clock seconds (compilation excluded by a warm-up run),
the best fitness, whether the best loss passes the property checks (vanilla evolution's best may
not: the simulation alone can reward a loss that is not monotonic), and the best loss.

Usage: python -m benchmarks.search_ablation [--branch cls_binary] [--population 1000]
       [--generations 5] [--seeds 0] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from benchmarks.common import machine


def run(strategy: str, branch: str, population: int, generations: int, seed: int, out: str):
    from jaxloss.search import Settings, run_search
    from jaxloss.search.settings import validate

    settings = validate(Settings(branch=branch, population=population, generations=generations,
                                 parents=max(2, population // 20), seed=seed, strategy=strategy,
                                 detector=False, out=out))
    start = time.perf_counter()
    report = run_search(settings, log=lambda *a, **k: None)
    seconds = time.perf_counter() - start
    passes = None
    if report["best"]:
        import jaxloss

        passes = bool(jaxloss.check(report["best"], branch)[0].passed)
    return {"strategy": strategy, "seed": seed, "seconds": seconds,
            "best_fitness": report["fitness"], "best": report["best"],
            "best_passes_checks": passes,
            "stages": report["totals"], "distinct_simulated": report["distinct_simulated"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--branch", default="cls_binary", choices=["cls", "cls_binary", "reg"])
    parser.add_argument("--population", type=int, default=1000)
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--quick", action="store_true", help="population 300, 3 generations")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.population, args.generations = 300, 3
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # compile everything once (same shapes) so that no strategy pays for it
        for strategy in ("random", "vanilla", "cse"):
            run(strategy, args.branch, args.population, 1, 99, f"{tmp}/warmup-{strategy}")
        for seed in [int(s) for s in args.seeds.split(",")]:
            for strategy in ("random", "vanilla", "cse"):
                rows.append(run(strategy, args.branch, args.population, args.generations, seed,
                                f"{tmp}/{strategy}-{seed}"))
    result = {"benchmark": "search_ablation", "branch": args.branch,
              "population": args.population, "generations": args.generations, "runs": rows,
              "machine": machine()}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.branch}: population {args.population:,} x {args.generations} generations "
          f"(JAX stages; fitness = mini-simulation score)")
    print(f"{'strategy':9s} {'seed':>4s} {'generated':>10s} {'valid':>8s} {'property':>9s} "
          f"{'simulated':>10s} {'seconds':>8s} {'best':>8s} {'checks':>7s}  best loss")
    for r in rows:
        st = r["stages"]
        valid = st["validity"]["out"]
        prop = st["property"]["out"] if "property" in st else "-"
        print(f"{r['strategy']:9s} {r['seed']:>4d} {st['validity']['in']:>10,} {valid:>8,} "
              f"{prop:>9} {r['distinct_simulated']:>10,} {r['seconds']:>8.1f} "
              f"{(r['best_fitness'] or float('nan')):>8.4f} "
              f"{ {True: 'pass', False: 'FAIL', None: '-'}[r['best_passes_checks']]:>7s}  "
              f"{r['best']}")
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, JAX {m['jax']} on {m['jax_backend']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
