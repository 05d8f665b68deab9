"""BDD100K detection labels → COCO dict.

Reads the BDD100K label json: a list of frames (``bdd100k_labels_images_<split>.json`` and the
2020 ``det_20`` files), or a Scalabel object with a ``frames`` list. Each frame has ``name`` (the
image file) and ``labels``, each label a ``category`` and, for boxes, ``box2d`` with ``x1, y1, x2,
y2`` in pixels.

Conventions:

* classes: the ten BDD100K detection classes (``DET_CLASSES``); the 2018 names ``person``, ``bike``,
  ``motor`` are mapped to ``pedestrian``, ``bicycle``, ``motorcycle``;
* labels without ``box2d`` (lanes, drivable areas) are not objects and are skipped; labels of other
  categories (``other person``, ``other vehicle``, ``trailer`` in det_20, which BDD's own
  evaluation ignores) are skipped too and counted in ``info["skipped"]``;
* a label with the attribute ``crowd: true`` becomes ``iscrowd: 1``;
* every BDD100K image is 1280 × 720; other sizes can be given.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bridge.data.coco import read_json
from bridge.data.errors import DataError

DET_CLASSES = ("pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
               "traffic light", "traffic sign")
LEGACY_NAMES = {"person": "pedestrian", "bike": "bicycle", "motor": "motorcycle"}
WIDTH, HEIGHT = 1280, 720


def _frames(data, path: Path) -> list:
    if isinstance(data, dict) and isinstance(data.get("frames"), list):
        return data["frames"]
    if isinstance(data, list):
        return data
    raise DataError(f"{path}: not a BDD100K label file: expected a list of frames or an object "
                    "with a 'frames' list")


def _box(label: dict, where: str) -> list[float]:
    box = label["box2d"]
    try:
        x1, y1, x2, y2 = (float(box[k]) for k in ("x1", "y1", "x2", "y2"))
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: box2d must have numbers x1, y1, x2, y2; got {box!r}") from None
    if x2 < x1 or y2 < y1:
        raise DataError(f"{where}: box2d has x2 < x1 or y2 < y1 ({x1}, {y1}, {x2}, {y2})")
    return [x1, y1, x2 - x1, y2 - y1]


def bdd_to_coco(path: "str | Path", classes: tuple[str, ...] = DET_CLASSES, width: int = WIDTH,
                height: int = HEIGHT) -> dict:
    """A BDD100K label file as a COCO dict (images named by the frames' ``name``)."""
    path = Path(path)
    frames = _frames(read_json(path, "BDD100K label"), path)
    images, annotations = [], []
    skipped: Counter = Counter()
    for k, frame in enumerate(frames):
        if not isinstance(frame, dict) or not isinstance(frame.get("name"), str):
            raise DataError(f"{path}: frame {k} has no 'name' (the image file name)")
        image_id = k + 1
        images.append(dict(id=image_id, file_name=frame["name"], width=width, height=height))
        labels = frame.get("labels") or []
        if not isinstance(labels, list):
            raise DataError(f"{path}: frame {k} ({frame['name']}): 'labels' must be a list")
        for j, label in enumerate(labels):
            where = f"{path}: frame {k} ({frame['name']}), label {j}"
            if not isinstance(label, dict) or "category" not in label:
                raise DataError(f"{where} has no 'category'")
            if label.get("box2d") is None:
                continue
            name = LEGACY_NAMES.get(label["category"], label["category"])
            if name not in classes:
                skipped[name] += 1
                continue
            box = _box(label, where)
            crowd = bool((label.get("attributes") or {}).get("crowd", False))
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=classes.index(name) + 1, bbox=box,
                                    area=box[2] * box[3], iscrowd=int(crowd)))
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(classes)]
    info = dict(description=f"BDD100K {path.name}", source=str(path), skipped=dict(skipped))
    return dict(info=info, images=images, annotations=annotations, categories=categories)
