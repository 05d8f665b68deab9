"""The search's small data sets, drawn from a training set (paper §3.2).

* :func:`d_verify`: D_verify, one image per category (§3.2.3), and at least ``min_images``: the
  model optimization simulation trains and tests a detector on it to judge a candidate in minutes.
  On COCO's 80 categories the paper's rule gives 80 images; on a data set of one or two categories
  it would give one or two, a detector trained and tested on a single image (a degenerate AP that
  ranks nothing), so random further images fill it up to ``min_images``.
* :func:`proxy_split`: the proxy task's split: a random validation subset of the training set
  (the paper holds out 10k COCO training images) and the remaining images to train on, so that the
  search never looks at the real validation set.

Both are deterministic functions of the data set and the seed.
"""

from __future__ import annotations

import numpy as np

from bridge.data.coco import subset


def d_verify(coco: dict, seed: int = 0, min_images: int = 1) -> dict:
    """One image per category: for each category (in the file's order) a random image containing
    it that no earlier category took. Categories with no annotated image are left out. If that
    gives fewer than ``min_images`` images, random further annotated images are added until there
    are ``min_images`` (or every annotated image).

    Returns:
      a COCO dict with max(one image per category, ``min_images``) images at most (every category
      kept in ``categories``).
    """
    rng = np.random.default_rng(seed)
    by_category: dict[int, list[int]] = {}
    for ann in sorted(coco["annotations"], key=lambda a: a["id"]):
        if not ann.get("iscrowd", 0):
            ids = by_category.setdefault(ann["category_id"], [])
            if ann["image_id"] not in ids:
                ids.append(ann["image_id"])
    chosen: list[int] = []
    for cat in coco["categories"]:
        candidates = [i for i in by_category.get(cat["id"], []) if i not in chosen]
        if not candidates:
            candidates = by_category.get(cat["id"], [])
            if not candidates:
                continue
        pick = candidates[int(rng.integers(len(candidates)))]
        if pick not in chosen:
            chosen.append(pick)
    annotated = sorted({i for ids in by_category.values() for i in ids} - set(chosen))
    extra = max(0, min(min_images - len(chosen), len(annotated)))
    if extra:
        chosen += [annotated[k] for k in sorted(rng.choice(len(annotated), extra, replace=False))]
    out = subset(coco, chosen)
    out["info"]["subset"] = (f"D_verify: one image per category, at least {min_images} "
                             f"(seed {seed})")
    return out


def proxy_split(coco: dict, val_size: int = 10_000, seed: int = 0) -> tuple[dict, dict]:
    """(train, val): ``val_size`` random images held out of ``coco`` for validation, the rest to
    train on. The paper's proxy task uses 10k images of COCO train2017.

    Raises:
      ValueError: if ``val_size`` is not between 1 and the number of images - 1.
    """
    n = len(coco["images"])
    if not 1 <= val_size < n:
        raise ValueError(f"proxy_split: val_size must be between 1 and {n - 1} (the data set has "
                         f"{n} images); got {val_size}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    ids = [coco["images"][k]["id"] for k in order]
    val_ids = sorted(ids[:val_size])
    val_set = set(val_ids)
    train_ids = [img["id"] for img in coco["images"] if img["id"] not in val_set]
    train, val = subset(coco, train_ids), subset(coco, val_ids)
    train["info"]["subset"] = f"proxy train: all but {val_size} held-out images (seed {seed})"
    val["info"]["subset"] = f"proxy val: {val_size} random training images (seed {seed})"
    return train, val
