"""``python -m bridge.train``: train a detector with searched losses, evaluate COCO mAP, write JSON.

::

    python -m bridge.train --config faster-rcnn_r18-tiny --loss-cls CSE-Autoloss-A_cls \\
        --loss-reg "(1 - i/u) + (1 - (i + 2)/e)" --iters 200
    python -m bridge.train --config fcos_r50-caffe_fpn_gn-head_cse-autoloss-b_1x_coco \\
        --data coco:data/coco/annotations/instances_train2017.json --images data/coco/train2017 \\
        --val coco:data/coco/annotations/instances_val2017.json --val-images data/coco/val2017

``--config`` is a config file or the name of one of the bridge's configs (``bridge/configs``);
``--loss-cls`` / ``--loss-reg`` take formula text (paper or release notation) or a library name
(``default`` keeps the config's loss); ``--data`` / ``--val`` take the specs of
:mod:`bridge.data.source` (default: the embedded data set). ``--iters N`` trains N iterations and
validates once at the end (default: the config's schedule). The result (COCO metrics from
pycocotools, the loss at every step, step times) is written as JSON to ``--out`` (default
``WORK_DIR/metrics.json``); a progress bar shows the training on stderr.

Exit status: 0 done; 2 bad arguments, config, formula or data (the message says which); 3 the
formula produced NaN or inf during training (the message names the formula and the step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import jaxloss
from bridge import config as configs, finite
from bridge.data import DataError, EmbeddedSpec, prepare


def _runner(cfg):
    from mmengine.runner import Runner

    import bridge.mmdet  # noqa: F401  (registers the losses, heads and hooks)

    return Runner.from_cfg(cfg)


def summarize(history: list[dict], window: int = 10) -> dict:
    """First / last losses (means over ``window`` steps) and step-time statistics of a run."""
    if not history:
        return {}
    losses = [row["loss"] for row in history if "loss" in row]
    times = [row["seconds"] for row in history[1:]] or [history[0]["seconds"]]
    w = max(1, min(window, len(losses) // 3 or 1))
    return {
        "loss_first": statistics.fmean(losses[:w]) if losses else None,
        "loss_last": statistics.fmean(losses[-w:]) if losses else None,
        "step_seconds_median": statistics.median(times),
        "step_seconds_mean": statistics.fmean(times),
    }


def train(config: "str | Path", loss_cls: str | None = None, loss_reg: str | None = None, *,
          data: str = "embedded", images=None, val: str | None = None, val_images=None,
          iters: int | None = None, batch_size: int | None = None,
          work_dir: "str | Path | None" = None, seed: int = 0, progress: bool = True,
          embedded: EmbeddedSpec = EmbeddedSpec(), explode_factor: float | None = None) -> dict:
    """Train a detector with the given losses, validate it, and return the run's record.

    Returns:
      a JSON-able dict: the arguments, ``metrics`` (CocoMetric's ``coco/bbox_mAP``,
      ``coco/bbox_mAP_50``, ... from pycocotools), ``history`` (losses and seconds per step), the
      summary of :func:`summarize`, ``train_seconds`` (wall time of the training and its final
      validation) and the device.

    ``explode_factor``: abort (``bridge.finite.ExplodingLossError``) when the loss exceeds that
    many times its starting scale (:class:`bridge.mmdet.hooks.ExplodingLossHook`); None: never.

    Raises:
      bridge.finite.NonFiniteLossError: the formula produced NaN/inf (names formula and step).
      bridge.finite.ExplodingLossError: the loss ran away (with ``explode_factor``).
      bridge.data.DataError, jaxloss.FormulaError, ValueError, FileNotFoundError: bad inputs.
    """
    cfg = configs.load(config)
    work_dir = Path(work_dir or Path("runs") / f"{configs.find(config).stem}-{int(time.time())}")
    dataset = prepare(data, images, val, val_images, work_dir=work_dir / "data", seed=seed,
                      embedded_spec=embedded)
    configs.apply_data(cfg, dataset)
    configs.set_losses(cfg, loss_cls, loss_reg)
    if iters is not None:
        configs.set_iters(cfg, iters)
    configs.set_runtime(cfg, work_dir, seed=seed, progress=progress, batch_size=batch_size)
    if explode_factor is not None:
        cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type="ExplodingLossHook",
                                                          factor=float(explode_factor))]
    runner = _runner(cfg)
    record = next(h for h in runner.hooks if type(h).__name__ == "RunRecordHook")
    start = time.perf_counter()
    try:
        runner.train()
    finally:
        finite.STEP.value = None
    seconds = time.perf_counter() - start
    result = {
        "config": str(configs.find(config)),
        "loss_cls": loss_cls or "default",
        "loss_reg": loss_reg or "default",
        "data": dataset.description,
        "classes": list(dataset.classes),
        "iters": iters,
        "batch_size": cfg.train_dataloader.get("batch_size"),
        "seed": seed,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "train_seconds": seconds,
        "metrics": record.metrics or {},
        **summarize(record.history),
        "history": record.history,
    }
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bridge.train",
        description="Train a detector with searched losses, evaluate COCO mAP (pycocotools) and "
                    "write the metrics as JSON.",
        epilog="Exit status: 0 done; 2 bad arguments, config, formula or data; 3 the formula "
               "produced NaN or inf during training.")
    p.add_argument("--config", required=True, help="config file, or a bridge config's name")
    p.add_argument("--loss-cls", default=None, metavar="FORMULA",
                   help="classification loss: formula text or library name (default: config's)")
    p.add_argument("--loss-reg", default=None, metavar="FORMULA",
                   help="box regression loss: formula text or library name (default: config's)")
    p.add_argument("--data", default="embedded",
                   help="embedded | coco:FILE.json | voc:ROOT[:SPLIT] | bdd:FILE.json")
    p.add_argument("--images", default=None, help="image folder of --data (coco, bdd)")
    p.add_argument("--val", default=None,
                   help="a data spec, proxy:N (hold out N training images) or train")
    p.add_argument("--val-images", default=None, help="image folder of --val (coco, bdd)")
    p.add_argument("--iters", type=int, default=None, help="training iterations (default: config)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default: config)")
    p.add_argument("--work-dir", default=None, help="default: runs/<config>-<time>")
    p.add_argument("--out", default=None, help="metrics JSON (default: WORK_DIR/metrics.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--traceback", action="store_true",
                   help="on an error, show the full traceback instead of the one-line message")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work_dir = Path(args.work_dir) if args.work_dir else \
        Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        result = train(args.config, args.loss_cls, args.loss_reg, data=args.data,
                       images=args.images, val=args.val, val_images=args.val_images,
                       iters=args.iters, batch_size=args.batch_size, work_dir=work_dir,
                       seed=args.seed, progress=not args.no_progress)
    except finite.NonFiniteLossError as e:
        if args.traceback:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (DataError, jaxloss.FormulaError, FileNotFoundError) as e:
        if args.traceback:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as e:
        if args.traceback:
            raise
        print(f"error: {type(e).__name__}: {e}\n(run with --traceback to see where)",
              file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else work_dir / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    metrics = result["metrics"]
    print(f"bbox mAP {metrics.get('coco/bbox_mAP', float('nan')):.4f} "
          f"(AP50 {metrics.get('coco/bbox_mAP_50', float('nan')):.4f}) after "
          f"{len(result['history'])} steps, {result['train_seconds']:.0f} s; loss "
          f"{result.get('loss_first', float('nan')):.3f} → {result.get('loss_last', float('nan')):.3f}"
          f"; metrics in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
