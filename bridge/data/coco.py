"""COCO detection json: reading with clear errors, writing, and subsets.

The one in-memory form of a data set in ``bridge.data`` is a COCO dict (``images``,
``annotations``, ``categories``); Pascal VOC and BDD100K are converted to it. Boxes are COCO's
``[x, y, width, height]`` in pixels, ``x, y`` the top-left corner, 0-based continuous coordinates.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

from bridge.data.errors import DataError

REQUIRED = {"images": ("id", "file_name", "width", "height"),
            "annotations": ("id", "image_id", "category_id", "bbox"),
            "categories": ("id", "name")}


def read_json(path: "str | Path", what: str):
    """Parsed JSON of ``path``; DataError naming the file if it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what} file" + (" (it is a directory)"
                                                         if path.is_dir() else ""))
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
                        ) from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason})") from None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate(coco, source: str) -> dict:
    """Check that ``coco`` is a well-formed COCO detection dict; DataError naming ``source``.

    Checked: the three lists and their required keys; unique image, annotation and category ids;
    unique category names; every annotation's image and category exist; ``bbox`` is four finite
    numbers with width, height >= 0; image width and height are positive.
    """
    if not isinstance(coco, dict):
        raise DataError(f"{source}: not a COCO detection file: the top level is a "
                        f"{type(coco).__name__}, not an object with images, annotations, "
                        "categories")
    for key, fields in REQUIRED.items():
        if key not in coco:
            raise DataError(f"{source}: not a COCO detection file: no {key!r} list")
        if not isinstance(coco[key], list):
            raise DataError(f"{source}: {key!r} must be a list, not {type(coco[key]).__name__}")
        for k, entry in enumerate(coco[key]):
            missing = [f for f in fields if not isinstance(entry, dict) or f not in entry]
            if missing:
                raise DataError(f"{source}: {key}[{k}] has no {', '.join(map(repr, missing))}")
    for key in REQUIRED:
        ids = [e["id"] for e in coco[key]]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise DataError(f"{source}: {key} id {dup!r} appears more than once")
    names = [c["name"] for c in coco["categories"]]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{source}: category name {dup!r} appears more than once")
    for k, img in enumerate(coco["images"]):
        if not (_number(img["width"]) and _number(img["height"]) and img["width"] > 0
                and img["height"] > 0):
            raise DataError(f"{source}: images[{k}] (id {img['id']}) has width {img['width']!r} "
                            f"and height {img['height']!r}; both must be positive numbers")
    image_ids = {img["id"] for img in coco["images"]}
    category_ids = {c["id"] for c in coco["categories"]}
    for k, ann in enumerate(coco["annotations"]):
        where = f"{source}: annotations[{k}] (id {ann['id']})"
        if ann["image_id"] not in image_ids:
            raise DataError(f"{where} refers to image_id {ann['image_id']!r}, which is not in "
                            "'images'")
        if ann["category_id"] not in category_ids:
            raise DataError(f"{where} refers to category_id {ann['category_id']!r}, which is not "
                            "in 'categories'")
        box = ann["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)):
            raise DataError(f"{where}: bbox must be [x, y, width, height] (four finite numbers); "
                            f"got {box!r}")
        if box[2] < 0 or box[3] < 0:
            raise DataError(f"{where}: bbox {box} has a negative width or height")
    return coco


def load(path: "str | Path") -> dict:
    """A validated COCO detection dict from a json file (DataError names the file and problem)."""
    return validate(read_json(path, "COCO annotation"), str(path))


def check_images(coco: dict, image_dir: "str | Path", source: str) -> None:
    """Every image file of ``coco`` exists under ``image_dir``; DataError lists missing ones."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DataError(f"{source}: image folder {image_dir} does not exist")
    missing = [img["file_name"] for img in coco["images"]
               if not (image_dir / img["file_name"]).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                          else "")
        raise DataError(f"{source}: {len(missing)} of {len(coco['images'])} images are missing "
                        f"from {image_dir}: {shown}")


def write(coco: dict, path: "str | Path") -> Path:
    """Write ``coco`` as json (atomically: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(coco, f)
    tmp.replace(path)
    return path


def subset(coco: dict, image_ids: Iterable[int]) -> dict:
    """The images with the given ids (in that order), their annotations and every category."""
    keep = list(dict.fromkeys(image_ids))
    by_id = {img["id"]: img for img in coco["images"]}
    missing = [i for i in keep if i not in by_id]
    if missing:
        raise ValueError(f"image ids not in the data set: {missing[:5]}")
    chosen = set(keep)
    return {
        "info": dict(coco.get("info", {})),
        "images": [by_id[i] for i in keep],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in chosen],
        "categories": list(coco["categories"]),
    }


def class_names(coco: dict) -> tuple[str, ...]:
    """Category names in the file's order: mmdet's CocoDataset and CocoMetric give labels in that
    order (pycocotools' ``getCatIds`` keeps the file's order, whatever order the names are asked)."""
    return tuple(c["name"] for c in coco["categories"])
