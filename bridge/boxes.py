"""Box geometry for the regression branch: intersection i, union u and enclosing area e.

Boxes are ``[N, 4]`` tensors ``(x1, y1, x2, y2)`` in pixels of the network's input image (after
resizing, as MMDetection's heads decode them). Areas are therefore in square pixels.

As in the published CSE-Autoloss release, ``AREA_EPS`` = 1e-7 is added to the union and to the
enclosing area (never to the intersection), so that ``i/u`` and ``(e - u)/e`` stay finite for
degenerate boxes; next to real box areas (tens to 10⁵ px²) it changes nothing, and the constants
2 and 3 of CSE-Autoloss-A_reg / -B_reg are likewise tiny next to real areas.
"""

from __future__ import annotations

import torch

from jaxloss.space import boxes
from jaxloss.space.guards import AREA_EPS


def areas(pred: torch.Tensor, target: torch.Tensor, eps: float = AREA_EPS
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Intersection, union and smallest-enclosing-box area of aligned box pairs
    (:func:`jaxloss.space.boxes.areas`, the same formula as the engine's).

    Args:
      pred, target: [N, 4] boxes (x1, y1, x2, y2), pixels.
      eps: added to u and e (px²).

    Returns:
      (i, u, e), each [N], px²; differentiable in both boxes.
    """
    if pred.shape != target.shape or pred.dim() != 2 or pred.shape[-1] != 4:
        raise ValueError(f"boxes must both be [N, 4] (x1, y1, x2, y2); got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    return boxes.areas(pred, target, torch, eps)


IOU_UNION_FLOOR = 1e-6
"""The union's floor in :func:`aligned_iou` (mmdet's ``bbox_overlaps`` default ``eps``)."""


def aligned_iou(pred: torch.Tensor, target: torch.Tensor, floor: float = 1e-7) -> torch.Tensor:
    """Detached IoU of aligned box pairs, clamped to [floor, 1]: the ``w`` input of the
    classification branches, the centerness target and the box-loss weight of the IoU-aware heads.

    The release's arithmetic: mmdet's ``bbox_overlaps(pred, target, is_aligned=True)``, i.e.
    i / max(u, 1e-6) with the raw union u (no ε added), then clamped at 1e-7 (its FCOS and ATSS
    heads). The floor of the union is in the boxes' own unit², so it matters for boxes only a few
    units wide (stride units): this form gives the release's IoU there too.

    Args:
      pred, target: [N, 4] boxes (x1, y1, x2, y2), any common unit.

    Returns:
      [N], no gradient.
    """
    with torch.no_grad():
        i, u, _ = areas(pred.detach().float(), target.detach().float(), eps=0.0)
        return (i / u.clamp(min=IOU_UNION_FLOOR)).clamp(min=floor, max=1.0).to(pred.dtype)
