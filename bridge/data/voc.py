"""Pascal VOC xml annotations → COCO dict.

Layout read: ``ROOT/ImageSets/Main/<split>.txt`` (image ids), ``ROOT/Annotations/<id>.xml`` and the
images in ``ROOT/JPEGImages/`` (VOC2007, VOC2012 and VOCdevkit copies all look like this).

Conventions:

* VOC boxes are 1-based inclusive pixel indices; COCO boxes are 0-based continuous coordinates, so
  ``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``.
* ``difficult`` objects become ``iscrowd: 1``: mmdet ignores them in training and pycocotools
  ignores detections on them, as VOC's own evaluation does.
* classes: the 20 VOC classes in their usual order unless ``classes`` is given; an object of
  another class is an error naming the file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from bridge.data.errors import DataError

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
               "sofa", "train", "tvmonitor")


def _text(node: ET.Element, path: str, where: Path) -> str:
    found = node.find(path)
    if found is None or found.text is None or not found.text.strip():
        raise DataError(f"{where}: missing <{path.replace('/', '><')}>")
    return found.text.strip()


def _number(node: ET.Element, path: str, where: Path) -> float:
    text = _text(node, path, where)
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{where}: <{path.replace('/', '><')}> is {text!r}, not a number") from None


def read_xml(path: Path, classes: tuple[str, ...]) -> tuple[dict, list[dict]]:
    """One VOC annotation file → (COCO image entry without id, annotation entries without ids)."""
    if not path.is_file():
        raise DataError(f"{path}: no such VOC annotation file")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path}: malformed XML ({e})") from None
    if root.tag != "annotation":
        raise DataError(f"{path}: not a VOC annotation (root element <{root.tag}>, expected "
                        "<annotation>)")
    width, height = _number(root, "size/width", path), _number(root, "size/height", path)
    filename = root.findtext("filename") or f"{path.stem}.jpg"
    image = dict(file_name=filename.strip(), width=int(width), height=int(height))
    anns = []
    for k, obj in enumerate(root.findall("object")):
        name = _text(obj, "name", path)
        if name not in classes:
            raise DataError(f"{path}: object {k} has class {name!r}, not one of {', '.join(classes)}")
        x1, y1 = _number(obj, "bndbox/xmin", path), _number(obj, "bndbox/ymin", path)
        x2, y2 = _number(obj, "bndbox/xmax", path), _number(obj, "bndbox/ymax", path)
        if x2 < x1 or y2 < y1:
            raise DataError(f"{path}: object {k} has xmax < xmin or ymax < ymin "
                            f"({x1}, {y1}, {x2}, {y2})")
        w, h = x2 - x1 + 1, y2 - y1 + 1
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        anns.append(dict(category_id=classes.index(name) + 1, bbox=[x1 - 1, y1 - 1, w, h],
                         area=w * h, iscrowd=int(difficult)))
    return image, anns


def voc_to_coco(root: "str | Path", split: str = "trainval",
                classes: tuple[str, ...] = VOC_CLASSES) -> dict:
    """The ``split`` of a VOC folder as a COCO dict (images relative to ``ROOT/JPEGImages``)."""
    root = Path(root)
    listing = root / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        raise DataError(f"{listing}: no such VOC split file (is {root} a VOC folder with "
                        "ImageSets/Main/, Annotations/ and JPEGImages/?)")
    ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{listing}: the split lists no images")
    images, annotations = [], []
    for image_id, name in enumerate(ids, start=1):
        image, anns = read_xml(root / "Annotations" / f"{name}.xml", tuple(classes))
        images.append(dict(image, id=image_id))
        for ann in anns:
            annotations.append(dict(ann, id=len(annotations) + 1, image_id=image_id))
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(classes)]
    return dict(info=dict(description=f"Pascal VOC {root.name} {split}", source=str(root)),
                images=images, annotations=annotations, categories=categories)
