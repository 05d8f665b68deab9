"""The embedded default data set: generated, deterministic, no download.

Coloured shapes on a noisy background, written as PNG images plus COCO json (train and val
splits). It has what a detection data set needs to exercise a loss:

* five categories (``box``, ``disc``, ``triangle``, ``cross``, ``diamond``), each with its own colour
  family, drawn with **class imbalance** (frequencies 40 / 25 / 17 / 11 / 7 %);
* objects at COCO's **small / medium / large** scales (area < 32², 32²–96², > 96² px²; the scale of
  each object is drawn first, then its size within that range);
* **overlaps**: objects may overlap (box IoU up to 0.4), larger ones drawn first so that smaller
  ones stay visible; the boxes are the full (amodal) extent of each shape;
* segmentation polygons (the exact drawn polygon), so Mask R-CNN can train on it too.

Same :class:`EmbeddedSpec` → byte-identical files (NumPy's PCG64 streams from the seed, PIL's PNG
writer). Files go to ``<cache>/embedded/<spec key>/`` (see :mod:`bridge.data.cache`), written into
a temporary folder first and moved into place, so an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bridge.data import coco as cocofile
from bridge.data.cache import cache_dir

VERSION = 1
"""Bump when the generator's output changes (it is part of the cache key)."""

CATEGORIES = ("box", "disc", "triangle", "cross", "diamond")
FREQUENCIES = (0.40, 0.25, 0.17, 0.11, 0.07)
COLOURS = ((220, 60, 50), (60, 170, 70), (60, 90, 220), (230, 200, 40), (180, 70, 200))
SCALES = {"small": (0.35, 10, 31), "medium": (0.40, 33, 95), "large": (0.25, 97, 150)}
"""COCO scale → (probability, smallest and largest sqrt(area) in px)."""
MAX_IOU = 0.4
SPLIT_SEEDS = {"train": 0, "val": 1}


@dataclass(frozen=True)
class EmbeddedSpec:
    """What to generate.

    Attributes:
      num_train, num_val: images per split.
      image_size: side of the square images, px (>= 112, so that large objects fit).
      max_objects: objects per image are 1..max_objects.
      seed: every random choice flows from it.
    """

    num_train: int = 256
    num_val: int = 64
    image_size: int = 160
    max_objects: int = 5
    seed: int = 0

    def key(self) -> str:
        text = json.dumps(dict(asdict(self), version=VERSION), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class EmbeddedData:
    """Paths of a generated data set (COCO json per split, one image folder)."""

    root: Path
    train_ann: Path
    val_ann: Path
    images: Path
    classes: tuple[str, ...] = CATEGORIES


# ----------------------------------------------------------------------------------------------
# geometry: each shape as a polygon inside its box
# ----------------------------------------------------------------------------------------------

def shape_polygon(category: str, x: float, y: float, w: float, h: float) -> list[tuple[float, float]]:
    """The polygon of a shape filling the box (x, y, w, h), as (x, y) vertices, px."""
    if category == "box":
        return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    if category == "disc":
        cx, cy = x + w / 2, y + h / 2
        return [(cx + w / 2 * math.cos(t), cy + h / 2 * math.sin(t))
                for t in np.linspace(0, 2 * math.pi, 24, endpoint=False)]
    if category == "triangle":
        return [(x + w / 2, y), (x + w, y + h), (x, y + h)]
    if category == "diamond":
        return [(x + w / 2, y), (x + w, y + h / 2), (x + w / 2, y + h), (x, y + h / 2)]
    if category == "cross":
        a, b = w / 3, h / 3
        return [(x + a, y), (x + 2 * a, y), (x + 2 * a, y + b), (x + w, y + b), (x + w, y + 2 * b),
                (x + 2 * a, y + 2 * b), (x + 2 * a, y + h), (x + a, y + h), (x + a, y + 2 * b),
                (x, y + 2 * b), (x, y + b), (x + a, y + b)]
    raise ValueError(f"unknown shape {category!r}")


def polygon_area(points) -> float:
    """Shoelace area, px²."""
    p = np.asarray(points, np.float64)
    return float(abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1)))
                 / 2)


FILL = {"box": 1.0, "disc": math.pi / 4, "triangle": 0.5, "diamond": 0.5, "cross": 5 / 9}
"""Shape area / box area, to pick box sizes that give the drawn scale's area."""


def _box_iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _objects(rng: np.random.Generator, spec: EmbeddedSpec) -> list[tuple[int, list[float]]]:
    """(category index, [x, y, w, h]) of one image's objects."""
    names = list(SCALES)
    probs = np.array([SCALES[n][0] for n in names])
    out: list[tuple[int, list[float]]] = []
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        for _attempt in range(20):
            cat = int(rng.choice(len(CATEGORIES), p=FREQUENCIES))
            lo, hi = SCALES[names[int(rng.choice(len(names), p=probs))]][1:]
            side = rng.uniform(lo, hi) / math.sqrt(FILL[CATEGORIES[cat]])  # box side for that area
            aspect = math.exp(rng.uniform(-0.3, 0.3))
            w, h = side * aspect, side / aspect
            if max(w, h) > spec.image_size - 2:
                continue
            x = rng.uniform(1, spec.image_size - 1 - w)
            y = rng.uniform(1, spec.image_size - 1 - h)
            box = [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]
            if all(_box_iou(box, other) <= MAX_IOU for _, other in out):
                out.append((cat, box))
                break
    return out


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(90, 150, 3)
    ramp = np.linspace(-20, 20, size)[None, :, None] * rng.uniform(-1, 1, 3)
    noise = rng.normal(0, 8, (size, size, 3))
    return np.clip(base + ramp + noise, 0, 255)


def _image(rng: np.random.Generator, spec: EmbeddedSpec):
    objects = _objects(rng, spec)
    pixels = _background(rng, spec.image_size).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    anns = []
    for cat, box in sorted(objects, key=lambda o: -o[1][2] * o[1][3]):  # large first
        name = CATEGORIES[cat]
        poly = shape_polygon(name, *box)
        colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOURS[cat])
        draw.polygon(poly, fill=colour)
        anns.append(dict(category_id=cat + 1, bbox=box, area=round(polygon_area(poly), 2),
                         segmentation=[[round(v, 2) for xy in poly for v in xy]], iscrowd=0))
    return image, anns


def _split(rng: np.random.Generator, spec: EmbeddedSpec, split: str, count: int,
           image_dir: Path) -> dict:
    images, annotations = [], []
    for k in range(count):
        image, anns = _image(rng, spec)
        name = f"{split}_{k:04d}.png"
        image.save(image_dir / name, format="PNG")
        image_id = k + 1
        images.append(dict(id=image_id, file_name=name, width=spec.image_size,
                           height=spec.image_size))
        for ann in anns:
            annotations.append(dict(ann, id=len(annotations) + 1, image_id=image_id))
    categories = [dict(id=i + 1, name=n, supercategory="shape") for i, n in enumerate(CATEGORIES)]
    info = dict(description=f"jaxloss embedded data set ({split})", version=VERSION,
                spec=asdict(spec))
    return dict(info=info, images=images, annotations=annotations, categories=categories)


def generate(spec: EmbeddedSpec = EmbeddedSpec(), root: "str | Path | None" = None,
             force: bool = False) -> EmbeddedData:
    """Generate the data set (or find it already generated) and return its paths.

    Args:
      spec: what to generate.
      root: output folder; default ``<cache>/embedded/<spec.key()>``.
      force: regenerate even if a complete copy exists.
    """
    if spec.image_size < 112:
        raise ValueError(f"image_size must be at least 112 px (large objects are > 96² px²); got "
                         f"{spec.image_size}")
    root = Path(root) if root is not None else cache_dir() / "embedded" / spec.key()
    data = EmbeddedData(root, root / "annotations" / "train.json",
                        root / "annotations" / "val.json", root / "images")
    if (root / "COMPLETE").is_file() and not force:
        return data
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=root.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "annotations").mkdir()
        streams = np.random.SeedSequence(spec.seed).spawn(len(SPLIT_SEEDS))
        for split, count in (("train", spec.num_train), ("val", spec.num_val)):
            rng = np.random.default_rng(streams[SPLIT_SEEDS[split]])
            coco = _split(rng, spec, split, count, tmp / "images")
            cocofile.write(coco, tmp / "annotations" / f"{split}.json")
        (tmp / "COMPLETE").write_text(spec.key() + "\n")
        if root.exists() and (force or not (root / "COMPLETE").is_file()):
            shutil.rmtree(root)
        try:
            os.replace(tmp, root)
        except OSError:
            if not (root / "COMPLETE").is_file():  # not another process finishing first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return data
