"""Shared test fixtures: deterministic inputs for every branch."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import pytest

# Compiled XLA programs are cached on disk so that repeated test runs (and the subprocesses some
# tests start) do not pay for the same compilation twice.
_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "jax"
jax.config.update("jax_compilation_cache_dir", os.environ.get("JAXLOSS_JAX_CACHE", str(_CACHE)))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def make_inputs(branch: str, n: int = 256, num_classes: int = 5, seed: int = 0,
                logit_scale: float = 3.0) -> dict[str, np.ndarray]:
    """Detection-like inputs: logits, one-hot / binary labels, IoUs, and consistent box areas."""
    rng = np.random.default_rng(seed)
    if branch == "cls":
        return dict(x=(rng.normal(size=(n, num_classes)) * logit_scale).astype(np.float32),
                    y=np.eye(num_classes, dtype=np.float32)[rng.integers(0, num_classes, n)],
                    w=rng.uniform(0, 1, n).astype(np.float32))
    if branch == "cls_binary":
        return dict(x=(rng.normal(size=n) * logit_scale).astype(np.float32),
                    y=rng.integers(0, 2, n).astype(np.float32),
                    w=rng.uniform(0, 1, n).astype(np.float32))
    boxes_a, boxes_b = random_box_pairs(rng, n)
    return areas_from_boxes(boxes_a, boxes_b)


def random_box_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of overlapping-or-not boxes (x1, y1, x2, y2) in pixels, sizes 4 to 400."""
    def boxes():
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(4, 400, (n, 2))
        return np.concatenate([xy, xy + wh], 1)

    a = boxes()
    b = a + rng.normal(0, 40, (n, 4))
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
    return a, b


def areas_from_boxes(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Intersection i, union u and smallest enclosing box area e of box pairs, in float64."""
    area = lambda t: (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])  # noqa: E731
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    i = iw * ih
    u = area(a) + area(b) - i
    ew = np.maximum(a[:, 2], b[:, 2]) - np.minimum(a[:, 0], b[:, 0])
    eh = np.maximum(a[:, 3], b[:, 3]) - np.minimum(a[:, 1], b[:, 1])
    return dict(i=i, u=u, e=ew * eh)


@pytest.fixture(params=["cls", "cls_binary", "reg"])
def branch(request) -> str:
    return request.param
