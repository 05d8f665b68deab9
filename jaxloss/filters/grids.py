"""The fixed points at which the convergence-property checks look at a loss (paper §3.2.2).

Every check of a branch reads one evaluation of the loss (values and the derivative along the
prediction) on one fixed set of points, laid out in segments:

``cls_binary`` (2,048 points, one per sample):
  * ``positive`` — 512 points, y = 1, w = 1, x = linspace(-16, 16): a perfectly localized positive
    whose score sweeps from confidently wrong to confidently right. The loss must not increase along
    it, must drop overall, and its derivative must vanish at the right end (x = 16, where σ(x) is
    within 1.2e-7 of 1: "the positive score → +∞" in float32).
  * ``negative`` — 512 points, y = 0, w = 1, the same sweep: the loss must not decrease and must rise.
  * ``random`` — 1,024 detection-like points (x ~ 4·N(0, 1) plus ±30 extremes, y ∈ {0, 1}, w
    uniform in [0, 1]): only finiteness is checked there.
  w = 1 on the curves because losses with IoU-soft targets (CSE-Autoloss-B_cls) have their minimum
  at a finite score when w < 1: monotonicity only holds for a perfectly localized box.

``cls`` (512 samples × K = 4 classes, class 0 the background; 2,048 values):
  * ``positive`` — 2 × 96 samples: ground truth class 1 (a foreground class) and class 0 (the
    background), whose logit sweeps linspace(-16, 16) with the other logits at 0; w = 1. The
    derivative is taken along the ground-truth logit.
  * ``negative`` — 2 × 96 samples: the same ground truths, the logit of another class (2, resp. 3)
    sweeps while the ground-truth logit stays at 2; w = 1.
  * ``random`` — 128 samples: logits 4·N(0, 1) and ±30 extremes, random labels, w uniform.

``reg`` (2,048 box pairs, areas in pixels with the release's ε = 1e-7 added to u and e):
  * ``families`` — 36 families of 32 predicted boxes moving away from a target box (t = 0 is the
    target itself): translation along x, along y and diagonally (up to two box sizes away),
    growing (to 4× the side), shrinking (to ¼ of the side) and changing the aspect ratio (area kept,
    up to 3:1); each for target sides 8, 64 and 512 px and target aspect ratios 1:1 and 1:2. The loss
    must be lowest at the target and never decrease along a family, and must rise overall.
  * ``random`` — 896 random box pairs (overlapping, disjoint, 2 to 800 px): finiteness.

The segment layout is fixed, so every candidate is judged on exactly the same points, and a subset
of the points (the *screen*, every 8th point of each curve with both ends, and every 8th random
point) is itself a valid check layout: a failure found on the screen is a failure on the full grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from jaxloss.space import boxes, branches

CURVE_POINTS = 512
X_MAX = 16.0
CLS_CLASSES = 4
REG_STEPS = 32


@dataclass(frozen=True)
class CheckGrid:
    """Inputs of a branch's property checks and where each segment lies.

    Attributes:
      branch: the branch.
      inputs: float32 arrays as ``jaxloss.engine.evaluate`` takes them (N samples).
      tangent: float32 array shaped like ``inputs["x"]``: the direction of the derivative (1 on the
        positive score; for ``cls`` the one-hot of the ground truth), None for ``reg``.
      curves: name → [n_curves, steps] sample indices of each monotone curve, and the direction
        (-1: must not increase, +1: must not decrease) in ``directions``.
      convergence: [n] sample indices where the derivative must have vanished (right ends of the
        positive curves); empty for ``reg``.
    """

    branch: str
    inputs: dict[str, np.ndarray]
    tangent: np.ndarray | None
    curves: dict[str, np.ndarray]
    directions: dict[str, int]
    convergence: np.ndarray
    num_samples: int = field(default=0)

    def subset(self, stride: int) -> "CheckGrid":
        """The screen: every ``stride``-th point of each curve (both ends kept) and of the rest."""
        keep = set()
        new_curves = {}
        for name, idx in self.curves.items():
            steps = idx.shape[1]
            cols = sorted(set(range(0, steps, stride)) | {steps - 1})
            new_curves[name] = idx[:, cols]
            keep.update(new_curves[name].ravel().tolist())
        on_curves = {int(i) for idx in self.curves.values() for i in idx.ravel()}
        others = [i for i in range(self.num_samples) if i not in on_curves]
        keep.update(others[::stride])
        keep.update(self.convergence.tolist())
        order = np.array(sorted(keep))
        position = {int(old): new for new, old in enumerate(order)}
        remap = np.vectorize(lambda i: position[int(i)])
        return CheckGrid(
            self.branch, {k: v[order] for k, v in self.inputs.items()},
            None if self.tangent is None else self.tangent[order],
            {k: remap(v).astype(np.int32) for k, v in new_curves.items()}, self.directions,
            remap(self.convergence).astype(np.int32) if self.convergence.size else self.convergence,
            len(order))


def _binary_grid(seed: int = 0) -> CheckGrid:
    sweep = np.linspace(-X_MAX, X_MAX, CURVE_POINTS)
    rng = np.random.default_rng(seed)
    n_random = 1024
    x_random = rng.normal(0, 4, n_random)
    x_random[:8] = [-30, -20, 20, 30, -30, -20, 20, 30]
    x = np.concatenate([sweep, sweep, x_random])
    y = np.concatenate([np.ones(CURVE_POINTS), np.zeros(CURVE_POINTS),
                        rng.integers(0, 2, n_random)])
    w = np.concatenate([np.ones(2 * CURVE_POINTS), rng.uniform(0, 1, n_random)])
    n = len(x)
    pos = np.arange(CURVE_POINTS)[None, :]
    return CheckGrid(
        "cls_binary", {k: v.astype(np.float32) for k, v in dict(x=x, y=y, w=w).items()},
        np.ones(n, np.float32), {"positive": pos, "negative": pos + CURVE_POINTS},
        {"positive": -1, "negative": +1}, np.array([CURVE_POINTS - 1], np.int32), n)


def _cls_grid(seed: int = 0) -> CheckGrid:
    steps = 96
    sweep = np.linspace(-X_MAX, X_MAX, steps)
    xs, ys, curves = [], [], {"positive": [], "negative": []}
    # (ground truth, swept class, curve): a foreground and the background ground truth each
    for gt, swept, curve in [(1, 1, "positive"), (0, 0, "positive"), (1, 2, "negative"),
                             (0, 3, "negative")]:
        x = np.zeros((steps, CLS_CLASSES))
        if curve == "negative":
            x[:, gt] = 2.0
        x[:, swept] = sweep
        curves[curve].append(np.arange(steps) + sum(len(v) for v in xs))
        xs.append(x)
        ys.append(np.eye(CLS_CLASSES)[np.full(steps, gt)])
    rng = np.random.default_rng(seed)
    n_random = 512 - 4 * steps
    x_random = rng.normal(0, 4, (n_random, CLS_CLASSES))
    x_random[:4] = [[-30, 30, 0, 0], [30, -30, 0, 0], [20, 20, -20, -20], [-20, -20, 30, 30]]
    xs.append(x_random)
    ys.append(np.eye(CLS_CLASSES)[rng.integers(0, CLS_CLASSES, n_random)])
    w = np.concatenate([np.ones(4 * steps), rng.uniform(0, 1, n_random)])
    x, y = np.concatenate(xs), np.concatenate(ys)
    n = len(x)
    ends = np.array([c[-1] for c in curves["positive"]], np.int32)
    return CheckGrid(
        "cls", {"x": x.astype(np.float32), "y": y.astype(np.float32), "w": w.astype(np.float32)},
        y.astype(np.float32), {k: np.stack(v).astype(np.int32) for k, v in curves.items()},
        {"positive": -1, "negative": +1}, ends, n)


def _box(cx, cy, w, h):
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def distance_families(side: float, aspect: float) -> np.ndarray:
    """[6, REG_STEPS, 4] predicted boxes moving away from the target box ``_box(0, 0, w, h)``."""
    w, h = side * np.sqrt(aspect), side / np.sqrt(aspect)
    t = np.linspace(0, 1, REG_STEPS)
    z = np.zeros_like(t)
    return np.stack([
        _box(2 * w * t, z, w + z, h + z),                      # translate along x
        _box(z, 2 * h * t, w + z, h + z),                      # translate along y
        _box(1.5 * w * t, 1.5 * h * t, w + z, h + z),          # translate diagonally
        _box(z, z, w * (1 + 3 * t), h * (1 + 3 * t)),          # grow
        _box(z, z, w / (1 + 3 * t), h / (1 + 3 * t)),          # shrink
        _box(z, z, w * np.sqrt(1 + 2 * t), h / np.sqrt(1 + 2 * t)),  # aspect change, area kept
    ])


def _reg_grid(seed: int = 0) -> CheckGrid:
    preds, targets = [], []
    for side in (8.0, 64.0, 512.0):
        for aspect in (1.0, 0.5):
            fam = distance_families(side, aspect)
            w, h = side * np.sqrt(aspect), side / np.sqrt(aspect)
            preds.append(fam.reshape(-1, 4))
            targets.append(np.broadcast_to(_box(0.0, 0.0, w, h), (fam.shape[0] * REG_STEPS, 4)))
    n_fam = sum(len(p) for p in preds)
    rng = np.random.default_rng(seed)
    n_random = 2048 - n_fam
    a = _box(rng.uniform(0, 500, n_random), rng.uniform(0, 500, n_random),
             rng.uniform(2, 800, n_random), rng.uniform(2, 800, n_random))
    b = a + rng.normal(0, 100, (n_random, 4))
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 2)
    preds.append(b)
    targets.append(a)
    areas = dict(zip("iue", boxes.areas(np.concatenate(preds), np.concatenate(targets), np)))
    families = np.arange(n_fam).reshape(-1, REG_STEPS).astype(np.int32)
    return CheckGrid("reg", {k: v.astype(np.float32) for k, v in areas.items()}, None,
                     {"families": families}, {"families": +1}, np.zeros(0, np.int32),
                     n_fam + n_random)


def check_grid(branch: str) -> CheckGrid:
    """The fixed check points of a branch (see the module docstring)."""
    name = branches.get(branch).name
    return {"cls_binary": _binary_grid, "cls": _cls_grid, "reg": _reg_grid}[name]()
