"""How well the mini optimization simulation ranks losses the way real detectors do.

Until detector runs of our own exist, the reference is the paper's COCO AP of the library losses
(Tables 4 and 5; both with the other branch at its default):

* ``cls`` (Faster R-CNN R50, + GIoU): CE 37.6, CEI 37.7, CSE-Autoloss-A_cls 38.2
* ``cls_binary`` (FCOS R50, + GIoU): FL 38.8, FLI 39.0, CSE-Autoloss-B 39.6 (B_cls with B_reg)
* ``reg`` (Faster R-CNN R50, + CE): GIoU 37.6, CSE-Autoloss-A_reg 37.9

Printed per branch: each loss's simulation score on five draws of the task (mean), the Kendall rank
correlation of the mean scores with the paper's AP, and the correlation on each draw separately
(differences between draws are in task difficulty, which moves every loss alike; what matters is
whether the order of the losses holds from draw to draw).

Usage: python -m benchmarks.minisim_agreement [--draws 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from benchmarks.common import machine

PAPER_AP = {
    "cls": {"CE": 37.6, "CEI": 37.7, "CSE-Autoloss-A_cls": 38.2},
    "cls_binary": {"FL": 38.8, "FLI": 39.0, "CSE-Autoloss-B_cls": 39.6},
    "reg": {"GIoU": 37.6, "CSE-Autoloss-A_reg": 37.9},
}


def kendall_tau(a, b) -> float:
    n, s = len(a), 0
    for i in range(n):
        for j in range(i + 1, n):
            s += np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    return float(s / (n * (n - 1) / 2))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import jaxloss

    out = {}
    for branch, ap in PAPER_AP.items():
        names = list(ap)
        scores = np.array([jaxloss.simulate([jaxloss.LIBRARY[n] for n in names],
                                            task_seed=seed).score for seed in range(args.draws)])
        mean, std = scores.mean(0), scores.std(0)
        reference = [ap[n] for n in names]
        tau = kendall_tau(mean, reference)
        per_draw = [kendall_tau(row, reference) for row in scores]
        out[branch] = {"losses": {n: {"paper_ap": ap[n], "score_mean": float(m),
                                      "score_std": float(s)}
                                  for n, m, s in zip(names, mean, std)},
                       "kendall_tau": tau, "kendall_tau_per_draw": per_draw}
    if args.json:
        print(json.dumps({"benchmark": "minisim_agreement", "branches": out,
                          "machine": machine()}, indent=2))
        return 0
    for branch, r in out.items():
        draws = ", ".join(f"{t:+.2f}" for t in r["kendall_tau_per_draw"])
        print(f"{branch}: Kendall tau with the paper's AP = {r['kendall_tau']:+.2f} on the mean "
              f"scores; per draw: {draws}")
        for name, v in r["losses"].items():
            print(f"  {name:20s} paper AP {v['paper_ap']:.1f}   simulation {v['score_mean']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
