"""Box geometry of the regression branch: intersection i, union u and enclosing area e of aligned
box pairs, written once for NumPy, JAX and PyTorch (the array namespace is an argument, as the
operators of :mod:`jaxloss.space.ops` are one formula for every library).

As in the published CSE-Autoloss release, :data:`~jaxloss.space.guards.AREA_EPS` is added to the
union and to the enclosing area, never to the intersection, so that ``i/u`` and ``(e - u)/e`` stay
finite for degenerate boxes. A box with x2 < x1 has a negative area, which enters u unclamped (as in
MMDetection's ``bbox_overlaps`` and the release).
"""

from __future__ import annotations

from jaxloss.space.guards import AREA_EPS


def areas(pred, target, xp, eps: float = AREA_EPS):
    """(i, u, e) of aligned box pairs.

    Args:
      pred, target: [..., 4] boxes (x1, y1, x2, y2) in pixels, arrays of the namespace ``xp``.
      xp: ``numpy``, ``jax.numpy`` or ``torch`` (anything with ``minimum``, ``maximum``, ``clip``).
      eps: added to u and e (px²).

    Returns:
      (i, u, e), each [...], px²; differentiable in both boxes where ``xp`` is.
    """
    iw = xp.clip(xp.minimum(pred[..., 2], target[..., 2]) - xp.maximum(pred[..., 0], target[..., 0]),
                 0, None)
    ih = xp.clip(xp.minimum(pred[..., 3], target[..., 3]) - xp.maximum(pred[..., 1], target[..., 1]),
                 0, None)
    i = iw * ih
    u = _area(pred) + _area(target) - i + eps
    ew = xp.clip(xp.maximum(pred[..., 2], target[..., 2]) - xp.minimum(pred[..., 0], target[..., 0]),
                 0, None)
    eh = xp.clip(xp.maximum(pred[..., 3], target[..., 3]) - xp.minimum(pred[..., 1], target[..., 1]),
                 0, None)
    return i, u, ew * eh + eps


def _area(box):
    return (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])
