"""The search with detectors in the loop, at small scale: random search, vanilla evolution and the
full funnel with the same budget of detector trainings (the shape of the paper's Tables 2 and 5),
then the best found loss against the default loss (CE / FL / GIoU, through the same IoU-aware
heads) on the embedded data set over several seeds.

Budget: every strategy sends ``top_k`` distinct candidates per generation to the detector stages
(D_verify, then the proxy task), for ``generations`` generations:

* ``random``  — fresh random candidates, validity check only, ``top_k`` of the valid ones trained;
* ``vanilla`` — evolution from the initial loss, validity check only, ``top_k`` valid offspring
  trained;
* ``cse``     — evolution with the full funnel (properties and simulation pick the ``top_k``).

Printed per strategy: candidates generated and valid, distinct detector trainings, the trainings
needed to reach the best fitness, the best proxy mAP and the best loss. Then the best ``cse`` loss
and the detector's default loss are each trained ``--final-iters`` iterations on the embedded
training set with ``--seeds`` seeds and evaluated on its validation split (mean ± std bbox mAP).

Usage: python -m benchmarks.detector_ablation [--branch cls_binary] [--population 300]
       [--generations 3] [--top-k 3] [--seeds 3] [--final-iters 300] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine

BASELINE = {"cls": "CE", "cls_binary": "FL", "reg": "GIoU"}
"""The default loss each searched loss is compared with (the other branch keeps the config's)."""

STRATEGIES = {
    "random": dict(strategy="random", property_checks=False, simulation=False),
    "vanilla": dict(strategy="vanilla", simulation=False),
    "cse": dict(strategy="cse"),
}


def trainings_to_best(run_dir: Path) -> tuple[int, int]:
    """(distinct proxy trainings in all, proxy trainings done when the best fitness was reached)."""
    results = [json.loads(l) for l in (run_dir / "detector_results.jsonl").read_text().splitlines()]
    proxy = [r for r in results if r["stage"] == "proxy"]
    best, at = None, 0
    for n, r in enumerate(proxy, start=1):
        if r["reason"] is None and (best is None or r["result"]["mAP"] > best):
            best, at = r["result"]["mAP"], n
    return len(proxy), at


def search(strategy: str, args, out: Path) -> dict:
    from jaxloss.search import Settings, run_search
    from jaxloss.search.settings import validate

    settings = validate(Settings(branch=args.branch, population=args.population,
                                 generations=args.generations, top_k=args.top_k, seed=0,
                                 out=str(out), **STRATEGIES[strategy]))
    start = time.perf_counter()
    report = run_search(settings, log=lambda *a, **k: None)
    trained, to_best = trainings_to_best(out)
    return {"strategy": strategy, "seconds": time.perf_counter() - start,
            "generated": report["totals"]["validity"]["in"],
            "valid": report["totals"]["validity"]["out"],
            "proxy_trainings": trained, "trainings_to_best": to_best,
            "best_fitness": report["fitness"], "best": report["best"]}


def final_comparison(branch: str, formula: str | None, seeds: int, iters: int, tmp: Path) -> dict:
    from bridge.search_stages import DEFAULT_CONFIG, LOSS_SLOT
    from bridge.train import train

    config = DEFAULT_CONFIG[branch]
    rows = {}
    # the baseline is given as a formula too, so both train with the same (IoU-aware) heads
    for name, loss in ((BASELINE[branch], BASELINE[branch]), ("searched", formula)):
        if not loss:
            continue
        maps = []
        for seed in range(seeds):
            slot = LOSS_SLOT[branch]
            record = train(config, iters=iters, seed=seed, progress=False,
                           work_dir=tmp / f"final-{name}-{seed}",
                           loss_cls=loss if slot == "loss_cls" else None,
                           loss_reg=loss if slot == "loss_reg" else None)
            maps.append(float(record["metrics"].get("coco/bbox_mAP", 0.0)))
        rows[name] = {"mAP": maps, "mean": statistics.fmean(maps),
                      "std": statistics.pstdev(maps), "formula": loss}
    return {"config": config, "iters": iters, "seeds": seeds, "losses": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--branch", default="cls_binary", choices=["cls", "cls_binary", "reg"])
    p.add_argument("--population", type=int, default=300)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--final-iters", type=int, default=300)
    p.add_argument("--quick", action="store_true",
                   help="2 generations, top-k 2, 2 seeds of 150 iterations")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.generations, args.top_k, args.seeds, args.final_iters = 2, 2, 2, 150
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = [search(s, args, tmp / s) for s in STRATEGIES]
        best = next(r["best"] for r in runs if r["strategy"] == "cse")
        final = final_comparison(args.branch, best, args.seeds, args.final_iters, tmp)
    result = {"benchmark": "detector_ablation", "branch": args.branch,
              "population": args.population, "generations": args.generations,
              "top_k": args.top_k, "runs": runs, "final": final, "machine": machine()}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.branch}: population {args.population}, {args.generations} generations, "
          f"top-{args.top_k} per generation to the detectors (embedded data, CPU)")
    print(f"{'strategy':9s} {'generated':>9s} {'valid':>7s} {'trainings':>9s} {'to best':>8s} "
          f"{'best mAP':>9s} {'minutes':>8s}  best loss")
    for r in runs:
        fit = r["best_fitness"]
        print(f"{r['strategy']:9s} {r['generated']:>9,} {r['valid']:>7,} {r['proxy_trainings']:>9} "
              f"{r['trainings_to_best']:>8} {(fit if fit is not None else float('nan')):>9.4f} "
              f"{r['seconds'] / 60:>8.1f}  {r['best']}")
    print(f"\n{final['config']}, {final['iters']} iterations, {final['seeds']} seeds, "
          "embedded validation split:")
    for name, row in final["losses"].items():
        print(f"  {name:8s} mAP {row['mean']:.4f} ± {row['std']:.4f}  {row['formula']}")
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
