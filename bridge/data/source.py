"""Turning a data-set description (``--data``, ``--val``) into COCO files that mmdet can load.

Data specs:

==========================  ==================================================================
spec                        meaning
==========================  ==================================================================
``embedded[:SIZE]``         the generated default data set (:mod:`bridge.data.embedded`); SIZE
                            the image side in px (default 160; e.g. ``embedded:320``: the same
                            objects on 4x the background, for the 256 px proxy)
``coco:ANNOTATIONS.json``   a COCO detection json; images in ``images=``
``voc:ROOT[:SPLIT]``        a Pascal VOC folder (split ``trainval`` by default for training,
                            ``test`` when given as ``--val voc:ROOT:test``)
``bdd:LABELS.json``         BDD100K detection labels; images in ``images=``
==========================  ==================================================================

Validation specs: any data spec, or ``proxy:N`` (hold N random training images out for validation
and train on the rest: the paper's proxy split), or ``train`` (validate on the training images: a
check that the detector can fit them, not a measure of generalization). Default: the embedded data
set's own val split for ``embedded``, ``proxy:N`` with N = min(10 000, images // 10) otherwise.

Every annotation file is validated (:func:`bridge.data.coco.validate`) and every image checked for
existence before training starts, so a bad file fails in a second with its name, not an hour in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from bridge.data import coco as cocofile
from bridge.data import embedded
from bridge.data.bdd import bdd_to_coco
from bridge.data.errors import DataError
from bridge.data.sampling import proxy_split
from bridge.data.voc import voc_to_coco

KINDS = ("embedded", "coco", "voc", "bdd")


@dataclass(frozen=True)
class DetectionData:
    """COCO files and image folders of a train / val pair (what a detector config needs).

    Attributes:
      classes: category names, in the order mmdet labels them.
      train_ann, val_ann: COCO json files; train_images, val_images: image folders.
      description: where it came from, for reports.
    """

    classes: tuple[str, ...]
    train_ann: Path
    train_images: Path
    val_ann: Path
    val_images: Path
    description: str


@dataclass
class _Loaded:
    coco: dict
    images: Path
    path: Path | None  # the json to use as is, if it was not converted
    name: str


def _load(spec: str, images, role: str, embedded_spec: embedded.EmbeddedSpec) -> _Loaded:
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        raise DataError(f"unknown data spec {spec!r}: use embedded[:SIZE], coco:FILE.json, "
                        "voc:ROOT[:SPLIT] or bdd:FILE.json")
    if kind == "embedded":
        if rest:
            try:
                embedded_spec = dataclasses.replace(embedded_spec, image_size=int(rest))
            except ValueError:
                raise DataError(f"data spec {spec!r}: embedded:SIZE takes the image side in px, "
                                "a whole number, e.g. embedded:320") from None
        try:
            data = embedded.generate(embedded_spec)
        except ValueError as err:
            raise DataError(f"data spec {spec!r}: {err}") from None
        path = data.train_ann if role == "train" else data.val_ann
        return _Loaded(cocofile.load(path), data.images, path, f"{spec} ({role})")
    if not rest:
        raise DataError(f"data spec {spec!r} names no file or folder")
    if kind == "voc":
        root, split = rest, "trainval" if role == "train" else "test"
        head, sep, tail = rest.rpartition(":")
        if sep and "/" not in tail:
            root, split = head, tail
        return _Loaded(cocofile.validate(voc_to_coco(root, split), f"{root} ({split})"),
                       Path(root) / "JPEGImages", None, f"VOC {root} {split}")
    if images is None:
        raise DataError(f"{spec}: say where its images are (--images / --val-images)")
    if kind == "coco":
        return _Loaded(cocofile.load(rest), Path(images), Path(rest), f"COCO {rest}")
    return _Loaded(cocofile.validate(bdd_to_coco(rest), rest), Path(images), None,
                   f"BDD100K {rest}")


def prepare(data: str = "embedded", images=None, val: str | None = None, val_images=None,
            work_dir: "str | Path" = "runs/data", seed: int = 0,
            embedded_spec: embedded.EmbeddedSpec = embedded.EmbeddedSpec()) -> DetectionData:
    """Resolve, convert, split and check a train / val pair; converted files go to ``work_dir``.

    Raises:
      DataError: naming the file and the problem (missing, not JSON, malformed, images missing,
        train and val with different categories).
    """
    work_dir = Path(work_dir)
    train = _load(data, images, "train", embedded_spec)
    if val is None:
        val = data if data.partition(":")[0] == "embedded" else \
            f"proxy:{min(10_000, max(1, len(train.coco['images']) // 10))}"
    if val.startswith("proxy:"):
        try:
            size = int(val.partition(":")[2])
        except ValueError:
            raise DataError(f"--val {val!r}: proxy:N needs a whole number N") from None
        rest, held = proxy_split(train.coco, size, seed)
        train = _Loaded(rest, train.images, None, f"{train.name}, minus {size} held out")
        valset = _Loaded(held, train.images, None, f"{size} held-out training images")
    elif val == "train":
        valset = train
    else:
        valset = _load(val, val_images, "val", embedded_spec)
    if cocofile.class_names(train.coco) != cocofile.class_names(valset.coco):
        raise DataError(f"train ({train.name}) and val ({valset.name}) have different categories: "
                        f"{cocofile.class_names(train.coco)} vs {cocofile.class_names(valset.coco)}")
    paths = []
    for role, part in (("train", train), ("val", valset)):
        if role == "val" and valset is train:
            paths.append(paths[0])
            break
        cocofile.check_images(part.coco, part.images, part.name)
        if not part.coco["images"]:
            raise DataError(f"{part.name}: no images")
        paths.append(part.path or cocofile.write(part.coco, work_dir / f"{role}.json"))
    val_name = "the training images" if valset is train else valset.name
    return DetectionData(cocofile.class_names(train.coco), paths[0], train.images, paths[1],
                         valset.images, f"train: {train.name}; val: {val_name}")
