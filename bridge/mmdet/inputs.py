"""How a detector's tensors become a searched loss's inputs (the release's conventions).

=============  ===================================  ==========================================
branch         detector gives                        the formula sees
=============  ===================================  ==========================================
``cls``        logits [N, C+1], labels [N] in        x = logits, y = one-hot(labels) [N, C+1],
               0..C (C = background), IoU [N]        w = IoU for positive RoIs, 1 for background
``cls_binary`` logits [N, C], labels [N] in 0..C     one (sample, class) pair per element:
               (C = background) or one-hot [N, C],   x = logit, y = 1 at the ground-truth class,
               IoU [N]                               w = IoU at the ground-truth class, 1 elsewhere
``reg``        boxes [N, 4], target boxes [N, 4]     i, u, e in px² (+1e-7 on u and e), see
               (x1, y1, x2, y2), pixels              :mod:`bridge.boxes`
=============  ===================================  ==========================================

``cls_binary``: the release feeds Q = w·y (the IoU at the ground-truth class, 0 elsewhere); jaxloss
formulas read it as ``w*y``, so w = IoU at positives and w = 1 at negatives gives the release's Q
and makes FLI = w·FL equal to FL on every negative. The IoU is always detached (a target, not a
path for gradients), as in the release.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _labels(labels: torch.Tensor, n: int, top: int, what: str) -> torch.Tensor:
    """Integer labels [N] in 0..top, checked (one device sync)."""
    if labels.dim() != 1 or labels.shape[0] != n or labels.dtype.is_floating_point:
        raise ValueError(f"{what}: labels must be an integer tensor [N] = [{n}]; got "
                         f"{labels.dtype} {tuple(labels.shape)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) > top):
        raise ValueError(f"{what}: labels must lie in 0..{top} ({top} = background); got "
                         f"{int(labels.min())}..{int(labels.max())}")
    return labels.long()


def _iou(iou: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor | None:
    if iou is None:
        return None
    if iou.shape != (n,):
        raise ValueError(f"iou must be [N] = [{n}] (one IoU per sample); got {tuple(iou.shape)}")
    return iou.detach().to(like.dtype)


def cls_inputs(logits: torch.Tensor, labels: torch.Tensor, iou: torch.Tensor | None = None
               ) -> dict[str, torch.Tensor]:
    """Inputs of the ``cls`` (softmax) branch.

    Args:
      logits: [N, K] with K = C + 1 (the last class is background).
      labels: [N] integers in 0..C.
      iou: [N] IoU of each RoI's decoded box with its ground truth (read at positives only);
        None gives w = 1 everywhere.

    Returns:
      x [N, K], y [N, K] one-hot, w [N].
    """
    if logits.dim() != 2:
        raise ValueError(f"cls logits must be [N, K]; got {tuple(logits.shape)}")
    n, k = logits.shape
    labels = _labels(labels, n, k - 1, "cls")
    y = F.one_hot(labels, k).to(logits.dtype)
    iou = _iou(iou, n, logits)
    w = torch.ones(n, dtype=logits.dtype, device=logits.device)
    if iou is not None:
        w = torch.where(labels < k - 1, iou, w)
    return dict(x=logits, y=y, w=w)


def binary_inputs(logits: torch.Tensor, target: torch.Tensor, iou: torch.Tensor | None = None
                  ) -> dict[str, torch.Tensor]:
    """Inputs of the ``cls_binary`` (per-class sigmoid) branch, as [N, C] tensors.

    Args:
      logits: [N, C] (no background column).
      target: [N] integers in 0..C (C = background), or [N, C] in {0, 1}.
      iou: [N] IoU of each sample's decoded box with its ground truth (read at the ground-truth
        class of positives only); None gives w = 1 everywhere.

    Returns:
      x, y, w, each [N, C] (flatten them for the loss module).
    """
    if logits.dim() != 2:
        raise ValueError(f"cls_binary logits must be [N, C]; got {tuple(logits.shape)}")
    n, c = logits.shape
    if target.shape == logits.shape:
        y = target.to(logits.dtype)
    else:
        labels = _labels(target, n, c, "cls_binary")
        y = F.one_hot(labels, c + 1)[:, :c].to(logits.dtype)
    iou = _iou(iou, n, logits)
    w = torch.ones_like(logits)
    if iou is not None:
        w = torch.where(y > 0.5, iou[:, None].expand_as(w), w)
    return dict(x=logits, y=y, w=w)


def alpha_weight(y: torch.Tensor, alpha: float) -> torch.Tensor:
    """The focal α balance applied outside the formula: α at y = 1, 1 - α at y = 0."""
    return alpha * y + (1 - alpha) * (1 - y)
