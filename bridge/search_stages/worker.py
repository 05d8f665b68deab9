"""The worker side of the detector stages: one detector trained with one candidate loss (the
default task, :data:`bridge.search_stages.settings.DEFAULT_TASK`, run by :mod:`bridge.executor` in
a worker process). Loads torch and MMDetection only when it runs."""

from __future__ import annotations

LOSS_SLOT = {"cls": "loss_cls", "cls_binary": "loss_cls", "reg": "loss_reg"}
"""The argument of :func:`bridge.train.train` (and :func:`bridge.config.set_losses`) that takes
the loss of each branch."""


def train_candidate(config: str, branch: str, formula: str, data: str, images: str, val: str,
                    iters: int, work_dir: str, seed: int, batch_size: int | None,
                    explode_factor: float, threads: int, gpus_per_training: int = 1) -> dict:
    """Train one detector with one candidate loss and return its COCO metrics (in a worker).
    ``gpus_per_training`` > 1: one rank process per GPU the worker sees (``batch_size`` per GPU,
    ``threads`` shared among the ranks)."""
    import torch

    from bridge.train import train

    torch.set_num_threads(max(1, threads))
    losses = {LOSS_SLOT[branch]: formula}
    record = train(config, loss_cls=losses.get("loss_cls"), loss_reg=losses.get("loss_reg"),
                   data=data, images=images, val=val, val_images=images, iters=iters,
                   work_dir=work_dir, seed=seed, progress=False, batch_size=batch_size,
                   explode_factor=explode_factor, gpus_per_training=gpus_per_training,
                   threads=threads)
    metrics = record.get("metrics", {})
    return {"mAP": float(metrics.get("coco/bbox_mAP", 0.0)),
            "mAP_50": float(metrics.get("coco/bbox_mAP_50", 0.0)),
            "loss_first": record.get("loss_first"), "loss_last": record.get("loss_last"),
            "train_seconds": record.get("train_seconds")}
