"""What the IoU-aware heads share."""

from __future__ import annotations

import torch


def iou_kwargs(loss: torch.nn.Module, iou: torch.Tensor) -> dict:
    """``{'iou': iou}`` for losses that accept it (``accepts_iou``), ``{}`` for stock mmdet losses."""
    return {"iou": iou} if getattr(loss, "accepts_iou", False) else {}


def sigmoid_loss_cfg(loss_cls: dict) -> dict:
    """One-stage heads read ``use_sigmoid`` from the loss config to size their classifier
    (C outputs with a sigmoid, C + 1 without). The bridge's one-stage heads are sigmoid heads, so a
    config that leaves it out (``type='CSE-Autoloss-B_cls'``) gets ``use_sigmoid=True``."""
    cfg = dict(loss_cls)
    cfg.setdefault("use_sigmoid", True)
    return cfg
