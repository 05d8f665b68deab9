"""Proof of discovery: does a search find a loss that beats its initial loss L_I, once the luck of
the selection is taken out?

Three searches on the embedded data with detectors in the loop and the same budget of proxy
trainings (``generations`` × ``top_k``, plus L_I in generation 0), each followed by the search's
own final measurement (its best losses and L_I trained again with seeds it never used):

* ``cse``     — the paper's funnel: validity, convergence properties, mini simulation, the best
  ``verify_k`` to D_verify, the best ``top_k`` of those by D_verify AP to the proxy task;
* ``vanilla`` — evolution with the validity check only: ``top_k`` valid offspring a generation go
  straight to the proxy task (no property check, no simulation, no D_verify);
* ``random``  — fresh random losses every generation, the validity check only, ``top_k`` of them
  to the proxy task.

Printed per strategy: proxy trainings used, distinct losses trained on the proxy task, the best
in-search mAP, the best loss's fresh-seed mAP (mean ± std) and its difference to L_I paired over
seeds with a 95% Student-t interval. The paper's claim to compare with (Table 5): CSE-Autoloss
reaches its best with 50 proxy evaluations where vanilla evolution needs 5,000.

Usage: python -m benchmarks.discovery [--quick] [--json] [--seed 0] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine

STRATEGIES = {
    "cse": dict(strategy="cse"),
    "vanilla": dict(strategy="vanilla", property_checks=False, simulation=False, verify=False),
    "random": dict(strategy="random", property_checks=False, simulation=False, verify=False),
}
FULL = dict(population=2000, generations=5, top_k=4, final_k=3, final_seeds=3)
QUICK = dict(population=300, generations=2, top_k=2, final_k=1, final_seeds=3)


def run(name: str, budget: dict, seed: int, workers: int, out: Path, log,
        detector_task: str | None = None) -> dict:
    """One search; returns its row of the table."""
    from jaxloss.search import Settings, run_search
    from jaxloss.search.settings import validate

    settings = validate(Settings(branch="cls_binary", seed=seed, workers=workers, out=str(out),
                                 detector_task=detector_task, **budget, **STRATEGIES[name]))
    start = time.perf_counter()
    report = run_search(settings, log=log)
    seconds = time.perf_counter() - start
    trainings = [json.loads(line) for line in
                 (out / "detector_results.jsonl").read_text().splitlines()]
    in_search = [t for t in trainings if t["stage"] == "proxy" and t.get("seed") == seed]
    final = report["final"]
    best = final["losses"][1] if final and len(final["losses"]) > 1 else None
    return {
        "strategy": name, "seed": seed, "seconds": seconds,
        "proxy_trainings": len(in_search),
        "distinct_losses_trained": len({t["formula"] for t in in_search}),
        "initial": report["initial"]["formula"],
        "initial_in_search": report["initial"]["fitness"],
        "initial_fresh": {k: final["losses"][0][k] for k in ("values", "mean", "std")},
        "best": report["best"], "best_in_search": report["fitness"],
        "best_fresh": ({k: best[k] for k in ("formula", "values", "mean", "std")}
                       if best else None),
        "best_vs_initial": best["vs_initial"] if best else None,
        "fresh_seeds": final["seeds"],
        "totals": report["totals"],
    }


def _fmt(value, sign=False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if sign else f"{value:.4f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"a smaller budget ({QUICK}) instead of {FULL}")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--seed", type=int, default=0, help="the searches' seed (default 0)")
    parser.add_argument("--workers", type=int,
                        help="trainings at once (default: the search's, one per core up to 4)")
    parser.add_argument("--strategies", default="cse,vanilla,random",
                        help="comma-separated subset of cse, vanilla, random")
    parser.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--detector-task", help=argparse.SUPPRESS)  # tests: a fake training
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else FULL
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    unknown = sorted(set(names) - set(STRATEGIES))
    if unknown:
        parser.error(f"--strategies: unknown {', '.join(unknown)}; choose from "
                     f"{', '.join(STRATEGIES)}")
    quiet = args.json

    def log(*parts, **kwargs):
        if not quiet:
            print(*parts, flush=True, file=sys.stderr)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        for name in names:
            log(f"== {name} ==")
            rows.append(run(name, budget, args.seed, args.workers, root / name, log,
                            args.detector_task))
    result = {"benchmark": "discovery", "branch": "cls_binary", "budget": budget,
              "proxy_budget": budget["generations"] * budget["top_k"], "runs": rows,
              "paper": "Table 5: CSE-Autoloss reaches its best with 50 proxy evaluations, "
                       "vanilla evolution with 5,000 (Faster R-CNN, COCO)",
              "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"cls_binary on the embedded data, {budget['population']:,} candidates x "
          f"{budget['generations']} generations, top {budget['top_k']} to the proxy task, "
          f"{budget['final_seeds']} fresh seeds for the final measurement")
    print(f"{'strategy':9s} {'proxy':>6s} {'distinct':>9s} {'best in':>8s} "
          f"{'best, fresh seeds':>19s} {'L_I, fresh seeds':>19s} {'best - L_I [95% CI]':>28s}")
    for r in rows:
        fresh = r["best_fresh"] or {}
        li = r["initial_fresh"]
        diff = r["best_vs_initial"] or {}
        ci = diff.get("ci")
        interval = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""
        print(f"{r['strategy']:9s} {r['proxy_trainings']:>6d} {r['distinct_losses_trained']:>9d} "
              f"{_fmt(r['best_in_search']):>8s} "
              f"{_fmt(fresh.get('mean')) + ' ± ' + _fmt(fresh.get('std')):>19s} "
              f"{_fmt(li['mean']) + ' ± ' + _fmt(li['std']):>19s} "
              f"{_fmt(diff.get('mean'), sign=True) + ' ' + interval:>28s}")
    print(f"paper: {result['paper']}")
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores; {result['date']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
