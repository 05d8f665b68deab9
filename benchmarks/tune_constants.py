"""Constant tuning (CMA-ES on the mini simulation, beyond the paper): what it gains, and whether
the gain holds on other draws of the simulation task.

For each library loss with numeric constants: its simulation score as written and after
``--generations`` CMA-ES generations (population 16), tuned on the mean over the task draws
``--tune-draws`` (default 0, 1, 2, as the search does), the wall-clock, and both constant vectors
scored on ``--held-out`` further draws of the same kind of task that tuning never saw (a gain that
vanishes there was fitted to the tuning draws' noise). ``--tune-draws 0`` tunes on the search's
draw alone.

Usage: python -m benchmarks.tune_constants [--generations 20] [--held-out 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks.common import machine

LOSSES = ("FLI", "CSE-Autoloss-B_cls", "GIoU", "CSE-Autoloss-A_reg")


def measure(name: str, generations: int, tune_draws: tuple, held_out: int) -> dict:
    from jaxloss.evolution.tune import simulation_scores, tune_constants
    from jaxloss.space.library import LIBRARY

    loss = LIBRARY[name]
    start = time.perf_counter()
    tuned = tune_constants(loss, generations=generations, task_seeds=tune_draws)
    seconds = time.perf_counter() - start
    rows = np.asarray([tuned.start] + [tuned.values] * 15, np.float32)
    draws = []
    for seed in range(max(tune_draws) + 1, max(tune_draws) + 1 + held_out):
        score, bad = simulation_scores(tuned.nodes, loss.branch, tuned.slots, rows, seed=seed)
        score = np.where(bad, 0.0, score)
        draws.append({"seed": seed, "start": float(score[0]), "tuned": float(score[1])})
    return {"loss": name, "branch": loss.branch, "constants": len(tuned.slots),
            "start": list(tuned.start), "values": [round(v, 4) for v in tuned.values],
            "tuned_formula": tuned.text, "score_start": tuned.start_score,
            "score_tuned": tuned.score, "seconds": seconds, "held_out": draws}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generations", type=int, default=20, help="CMA-ES generations (default 20)")
    p.add_argument("--tune-draws", type=int, nargs="+", default=[0, 1, 2],
                   help="task draws tuning scores on (default 0 1 2)")
    p.add_argument("--held-out", type=int, default=3,
                   help="further task draws, never tuned on (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    results = []
    for name in LOSSES:
        r = measure(name, args.generations, tuple(args.tune_draws), args.held_out)
        results.append(r)
        if not args.json:
            gains = ", ".join(f"draw {d['seed']}: {d['start']:.4f} -> {d['tuned']:.4f}"
                              for d in r["held_out"])
            print(f"{name} ({r['branch']}, {r['constants']} constants): "
                  f"{r['score_start']:.4f} -> {r['score_tuned']:.4f} in {r['seconds']:.0f} s; "
                  f"held out: {gains}\n    {r['tuned_formula']}", flush=True)
    out = {"machine": machine(), "generations": args.generations,
           "tune_draws": args.tune_draws, "results": results}
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        print(f"machine: {out['machine']['cpu']}, {out['machine']['cores']} cores, "
              f"JAX {out['machine']['jax_backend']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
