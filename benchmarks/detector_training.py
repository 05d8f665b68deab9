"""Small detectors trained on the embedded data set with default and searched losses (CPU-sized).

Each run trains a tiny ResNet-18-FPN detector (``bridge/configs/small``, 128 px images, batch 2,
AdamW from scratch) for ``--iters`` iterations on the embedded data set's 32 training images and
evaluates COCO bbox mAP (pycocotools) on its 16 validation images. Printed per run: seconds per
step (median, mean), training seconds, mAP, AP50, and the loss over the first and last 10% of the
steps. These are smoke-scale figures (tiny models, tens of images): they show that every loss
trains, and what a training costs here; they say nothing about which loss is better on COCO.

Usage:
  python -m benchmarks.detector_training [--iters 300] [--detectors faster,fcos,atss,cascade,mask]
                                         [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from benchmarks.common import machine

RUNS = {
    "faster": [("faster-rcnn_r18-tiny", None, None),
               ("faster-rcnn_r18-tiny", "CSE-Autoloss-A_cls", "CSE-Autoloss-A_reg")],
    "fcos": [("fcos_r18-tiny", None, None),
             ("fcos_r18-tiny", "CSE-Autoloss-B_cls", "CSE-Autoloss-B_reg")],
    "atss": [("atss_r18-tiny", None, None),
             ("atss_r18-tiny", "CSE-Autoloss-B_cls", "CSE-Autoloss-B_reg")],
    "cascade": [("cascade-rcnn_r18-tiny", None, None),
                ("cascade-rcnn_r18-tiny", "CSE-Autoloss-A_cls", "CSE-Autoloss-A_reg")],
    "mask": [("mask-rcnn_r18-tiny", None, None),
             ("mask-rcnn_r18-tiny", "CSE-Autoloss-A_cls", "CSE-Autoloss-A_reg")],
}


def run(config: str, loss_cls, loss_reg, iters: int, work_dir: str) -> dict:
    from bridge.train import train

    result = train(config, loss_cls, loss_reg, iters=iters, work_dir=work_dir, progress=False)
    steps = [row["seconds"] for row in result["history"]]
    losses = [row["loss"] for row in result["history"]]
    k = max(1, len(losses) // 10)
    return {
        "config": config,
        "loss_cls": loss_cls or "default",
        "loss_reg": loss_reg or "default",
        "iters": iters,
        "step_seconds_median": statistics.median(steps),
        "step_seconds_mean": statistics.fmean(steps),
        "train_seconds": result["train_seconds"],
        "bbox_mAP": result["metrics"].get("coco/bbox_mAP"),
        "bbox_mAP_50": result["metrics"].get("coco/bbox_mAP_50"),
        "loss_first": statistics.fmean(losses[:k]),
        "loss_last": statistics.fmean(losses[-k:]),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--detectors", default="faster,fcos",
                   help=f"comma-separated, from {','.join(RUNS)}")
    p.add_argument("--work-dir", default="runs/benchmark")
    p.add_argument("--quick", action="store_true", help="50 iterations (a minute or two)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    iters = 50 if args.quick else args.iters
    import torch

    rows = []
    for name in args.detectors.split(","):
        if name not in RUNS:
            p.error(f"unknown detector {name!r}; choose from {', '.join(RUNS)}")
        for config, loss_cls, loss_reg in RUNS[name]:
            rows.append(run(config, loss_cls, loss_reg, iters, f"{args.work_dir}/{len(rows)}"))
            if not args.json:
                r = rows[-1]
                print(f"{r['config']:24s} {r['loss_cls']:20s} {r['loss_reg']:20s} "
                      f"step {r['step_seconds_median']:.3f} s (mean {r['step_seconds_mean']:.3f})  "
                      f"train {r['train_seconds']:6.1f} s  mAP {r['bbox_mAP']:.3f}  "
                      f"AP50 {r['bbox_mAP_50']:.3f}  loss {r['loss_first']:.3f} → "
                      f"{r['loss_last']:.3f}", flush=True)
    report = {"machine": dict(machine(), torch=torch.__version__,
                              torch_threads=torch.get_num_threads()), "runs": rows}
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print(json.dumps(report["machine"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
