"""Does the search's proxy task tell losses apart? Known losses × seeds on its default protocol.

A loss search can only find better losses if its proxy task (a short training, COCO mAP on a
held-out split) ranks losses as real trainings do, and if one loss's seeds scatter less than losses
differ. This trains, through :mod:`bridge.compare` (isolated workers, resumable, the search's
default proxy protocol unless ``--iters`` changes it), each loss with every seed and reports:

* per loss: mAP mean ± sample std over seeds and the relative seed noise (std / mean);
* ``fl_gt_bce``: the focal loss beats binary cross-entropy (FL with γ = 0, α = 0.25 kept, applied
  outside the formula by the head as for FL) in a one-stage detector, as in the RetinaNet paper
  (Lin et al. 2017, Table 1: FL γ = 2 34.0 AP, α-balanced CE 31.1 AP, ResNet-50 on COCO);
* ``giou_ge_iou``: with the focal loss for classification, the GIoU box loss is at least as good as
  the IoU loss (Rezatofighi et al. 2019);
* the margin of each ordering in seed std (difference of the means / the pooled std,
  sqrt((s_a² + s_b²) / 2)), and the paired 95% interval of the difference over the seeds.

Losses (``--quick``: the ones marked *, every group on the default protocol):

* one-stage classification (``cls_binary``, the search's FCOS R18-tiny): FL*, FLI*, BCE*,
  CSE-Autoloss-B_cls; the box loss stays the config's GIoU;
* box regression (``reg``, same detector): FL+GIoU*, FL+IoU*: GIoU / IoU as the searched box loss,
  the classification loss stays the config's focal loss;
* two-stage classification (``cls``, the search's Faster R-CNN R18-tiny; not in ``--quick``): CE,
  CEI, CSE-Autoloss-A_cls.

Each training costs about 1.5–3 minutes on 2 CPU cores (FCOS) and 5–7 (Faster R-CNN): ``--quick``
is 15 trainings, the full run 27. Trainings are kept in ``--out`` (default runs/proxy_fidelity): a
rerun trains only what is missing, and the full run reuses ``--quick``'s.

Another protocol: ``--iters N``; ``--config NAME`` (the one-stage detector, for the one-stage and
box groups) with ``--data SPEC``, e.g. the 256 px proxy: ``--config fcos_r18-tiny-256 --data
embedded:320``.

Usage: python -m benchmarks.proxy_fidelity [--quick] [--json] [--seeds 0 1 2] [--iters N]
       [--config NAME] [--data SPEC] [--workers W] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from benchmarks.common import machine

GROUPS = {
    "one_stage": dict(branch="cls_binary", losses=[("FL", "FL", True), ("FLI", "FLI", True),
                                                   ("BCE", "BCE", True),
                                                   ("CSE-Autoloss-B_cls", "CSE-Autoloss-B_cls",
                                                    False)]),
    "box": dict(branch="reg", losses=[("FL+GIoU", "GIoU", True), ("FL+IoU", "IoU", True)]),
    "two_stage": dict(branch="cls", losses=[("CE", "CE", False), ("CEI", "CEI", False),
                                            ("CSE-Autoloss-A_cls", "CSE-Autoloss-A_cls", False)],
                      full_only=True),
}
"""Group → branch and (name in the report, library loss, in --quick)."""
ORDERINGS = {"fl_gt_bce": ("FL", "BCE", "gt"), "giou_ge_iou": ("FL+GIoU", "FL+IoU", "ge")}
"""Ordering key → (the loss expected better, the other, strict or not)."""


def ordering(losses: dict, better: str, worse: str, strict: bool) -> dict:
    """Whether ``better``'s mean mAP is above (``strict``) or at least ``worse``'s, the margin in
    pooled seed std, and the paired difference over the seeds both trained."""
    from bridge.compare import paired_interval

    a, b = losses[better], losses[worse]
    if a["mean"] is None or b["mean"] is None:
        return {"holds": None, "margin_in_std": None, "diff": None}
    diff = a["mean"] - b["mean"]
    holds = diff > 0 if strict else diff >= 0
    pooled = math.sqrt(((a["std"] or 0.0) ** 2 + (b["std"] or 0.0) ** 2) / 2)
    margin = diff / pooled if pooled > 0 else (math.inf if diff > 0 else
                                                (-math.inf if diff < 0 else 0.0))
    both = [s for s in a["per_seed"] if a["per_seed"][s] is not None
            and b["per_seed"].get(s) is not None]
    paired = paired_interval([a["per_seed"][s] for s in both], [b["per_seed"][s] for s in both])
    return {"holds": bool(holds), "margin_in_std": margin, "diff": paired}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="FL, FLI, BCE, FL+GIoU, FL+IoU only (15 trainings on 3 seeds), still on "
                        "the default protocol")
    p.add_argument("--json", action="store_true", help="print the report as JSON (progress on "
                                                       "stderr)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S")
    p.add_argument("--iters", type=int, default=None,
                   help="training iterations instead of the proxy task's (another protocol)")
    p.add_argument("--config", default=None, metavar="NAME",
                   help="one-stage detector config of the one-stage and box groups (default: the "
                        "search's, fcos_r18-tiny)")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="training set (default: the search's, embedded), e.g. embedded:320")
    p.add_argument("--workers", type=int,
                   help="trainings at once (default: the search's, one per core up to 4)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per training")
    p.add_argument("--out", default="runs/proxy_fidelity")
    p.add_argument("--task", default=None, help="training function (default: the search's)")
    args = p.parse_args(argv)
    if len(args.seeds) < 3 and not args.task:
        p.error("--seeds: at least 3, for a std and an interval that mean something")

    import torch

    from bridge.compare import compare, format_table, make_protocol, resolve_loss

    stream = sys.stderr if args.json else sys.stdout
    log = lambda message: print(message, file=stream, flush=True)  # noqa: E731
    start = time.monotonic()
    out = Path(args.out)
    if args.iters is not None:
        out = out / f"iters{args.iters}"
    if args.config or args.data:
        out = out / "-".join(filter(None, (args.config, (args.data or "").replace(":", ""))))
    default = args.iters is None and args.config is None and args.data is None
    losses, protocols, complete = {}, {}, True
    for group, spec in GROUPS.items():
        if args.quick and spec.get("full_only"):
            continue
        chosen = [(name, lib) for name, lib, quick in spec["losses"] if quick or not args.quick]
        candidates = [resolve_loss(f"{name}={lib}", spec["branch"]) for name, lib in chosen]
        config = args.config if spec["branch"] != "cls" else None
        protocol = make_protocol(spec["branch"], out / group, iters=args.iters,
                                 config=config, data=args.data,
                                 timeout_s=args.timeout, task=args.task,
                                 check_formula=candidates[0].formula)
        protocols[group] = dict(text=protocol.describe(), config=protocol.config,
                                branch=protocol.branch, iters=protocol.training["iters"],
                                batch_size=protocol.batch_size, data=protocol.description)
        log(f"\n== {group}: {protocol.describe()}")
        report = compare(protocol, candidates, args.seeds, out / group, workers=args.workers,
                         log=log)
        complete &= report["complete"]
        for name, row in report["losses"].items():
            losses[name] = dict(row, group=group)
        table = {n: dict(r, per_seed={int(s): v for s, v in r["per_seed"].items()},
                         failed={int(s): f for s, f in r["failed"].items()})
                 for n, r in report["losses"].items()}
        log(format_table(table, args.seeds))
    orderings = {}
    for key, (better, worse, kind) in ORDERINGS.items():
        found = ordering(losses, better, worse, strict=kind == "gt")
        orderings[key] = found["holds"]
        orderings[f"{key}_margin_in_std"] = found["margin_in_std"]
        orderings[f"{key}_paired_diff"] = found["diff"]
    result = {
        "quick": args.quick,
        "protocol": protocols,
        "default_protocol": default,
        "seeds": args.seeds,
        "losses": losses,
        "relative_noise": {n: row["relative_noise"] for n, row in losses.items()},
        "orderings": orderings,
        "complete": complete,
        "seconds": time.monotonic() - start,
        "date": time.strftime("%Y-%m-%d"),
        "machine": dict(machine(), torch=torch.__version__),
    }
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return 0 if complete else 1
    print("\nprotocol" + (" (the search's default proxy task)" if default else
                          " (not the search's default)") + ":")
    for group, prot in protocols.items():
        print(f"  {group}: {prot['text']}")
    print("\nrelative seed noise (std / mean): " + ", ".join(
        f"{n} {100 * v:.1f}%" if v is not None else f"{n} -"
        for n, v in result["relative_noise"].items()))
    for key, (better, worse, kind) in ORDERINGS.items():
        margin = orderings[f"{key}_margin_in_std"]
        paired = orderings[f"{key}_paired_diff"] or {}
        ci = paired.get("ci")
        print(f"{key}: {orderings[key]} ({better} {'>' if kind == 'gt' else '>='} {worse}; margin "
              f"{'-' if margin is None else f'{margin:.2f}'} pooled seed std; paired Δ "
              + (f"{paired['mean']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}])" if ci else "-)"))
    print(f"{result['seconds']:.0f} s; " + json.dumps(result["machine"]))
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
