"""Data: the embedded data set, COCO / VOC / BDD100K readers and their errors, D_verify, the proxy
split, and ``prepare``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge.data import (DataError, EmbeddedSpec, bdd_to_coco, d_verify, generate_embedded,
                         load_coco, prepare, proxy_split, voc_to_coco)
from bridge.data import coco as cocofile
from bridge.data.embedded import CATEGORIES

SPEC = EmbeddedSpec(num_train=24, num_val=8, image_size=128, seed=3)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    return generate_embedded(SPEC, root=tmp_path_factory.mktemp("embedded") / "data")


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# the embedded data set
# ----------------------------------------------------------------------------------------------

def test_embedded_data_is_deterministic(embedded, tmp_path):
    again = generate_embedded(SPEC, root=tmp_path / "again")
    assert _digest(again.root) == _digest(embedded.root)
    other = generate_embedded(EmbeddedSpec(num_train=24, num_val=8, image_size=128, seed=4),
                              root=tmp_path / "other")
    assert _digest(other.root) != _digest(embedded.root)


def test_embedded_data_has_what_a_detection_data_set_needs(embedded):
    train = load_coco(embedded.train_ann)
    val = load_coco(embedded.val_ann)
    assert len(train["images"]) == 24 and len(val["images"]) == 8
    assert cocofile.class_names(train) == CATEGORIES
    cocofile.check_images(train, embedded.images, "train")
    counts = np.bincount([a["category_id"] for a in train["annotations"]], minlength=6)[1:]
    assert (counts > 0).all(), "every category appears"
    assert counts[0] >= 3 * counts[-1], "class imbalance"
    areas = np.array([a["area"] for a in train["annotations"] + val["annotations"]])
    assert (areas < 32 ** 2).any() and ((areas >= 32 ** 2) & (areas < 96 ** 2)).any() \
        and (areas >= 96 ** 2).any(), "small, medium and large objects"

    def overlaps(anns):
        boxes = [a["bbox"] for a in anns]
        for i in range(len(boxes)):
            for j in range(i):
                a, b = boxes[i], boxes[j]
                if min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0]) and \
                        min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1]):
                    return True
        return False

    by_image = {}
    for a in train["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    assert any(overlaps(anns) for anns in by_image.values()), "overlapping objects"
    image = Image.open(embedded.images / train["images"][0]["file_name"])
    assert image.size == (128, 128) and image.mode == "RGB"
    for a in train["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128 and a["segmentation"]


def test_embedded_data_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLOSS_CACHE_DIR", str(tmp_path))
    first = generate_embedded(SPEC)
    assert first.root.parent == tmp_path / "embedded"
    stamp = first.train_ann.stat().st_mtime_ns
    assert generate_embedded(SPEC).train_ann.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="at least 112"):
        generate_embedded(EmbeddedSpec(image_size=64))


# ----------------------------------------------------------------------------------------------
# COCO errors
# ----------------------------------------------------------------------------------------------

def _coco(**changes):
    base = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 3]}],
            "categories": [{"id": 1, "name": "thing"}]}
    base.update(changes)
    return base


@pytest.mark.parametrize("content,message", [
    (None, "no such COCO annotation file"),
    ("{\"images\": [", "not valid JSON \\(line 1, column 13"),
    ("[1, 2]", "top level is a list"),
    (json.dumps({"images": [], "annotations": []}), "no 'categories' list"),
    (json.dumps(_coco(images=[{"id": 1, "width": 3, "height": 3}])), "images\\[0\\] has no 'file_name'"),
    (json.dumps(_coco(annotations=[{"id": 1, "image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1]}])),
     "refers to image_id 9"),
    (json.dumps(_coco(annotations=[{"id": 1, "image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1]}])),
     "refers to category_id 4"),
    (json.dumps(_coco(annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}])),
     "bbox must be \\[x, y, width, height\\]"),
    (json.dumps(_coco(annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 2]}])),
     "negative width or height"),
    (json.dumps(_coco(categories=[{"id": 1, "name": "a"}, {"id": 2, "name": "a"}])),
     "category name 'a' appears more than once"),
])
def test_bad_coco_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "instances.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        load_coco(path)
    assert str(path) in str(info.value)


def test_missing_images_are_listed(tmp_path):
    with pytest.raises(DataError, match="1 of 1 images are missing .*a.png"):
        cocofile.check_images(_coco(), tmp_path, "instances.json")


# ----------------------------------------------------------------------------------------------
# Pascal VOC
# ----------------------------------------------------------------------------------------------

VOC_XML = """<annotation><folder>VOC2007</folder><filename>{name}.jpg</filename>
<size><width>200</width><height>100</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult>
<bndbox><xmin>11</xmin><ymin>21</ymin><xmax>60</xmax><ymax>80</ymax></bndbox></object>
<object><name>person</name><difficult>1</difficult>
<bndbox><xmin>100</xmin><ymin>10</ymin><xmax>150</xmax><ymax>90</ymax></bndbox></object>
</annotation>"""


def make_voc(root: Path, names=("000001", "000002"), split="trainval") -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for name in names:
        (root / "Annotations" / f"{name}.xml").write_text(VOC_XML.format(name=name))
        Image.new("RGB", (200, 100)).save(root / "JPEGImages" / f"{name}.jpg")
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def test_voc_to_coco(tmp_path):
    coco = voc_to_coco(make_voc(tmp_path / "VOC2007"))
    cocofile.validate(coco, "voc")
    assert [i["file_name"] for i in coco["images"]] == ["000001.jpg", "000002.jpg"]
    dog = coco["annotations"][0]
    assert dog["bbox"] == [10.0, 20.0, 50.0, 60.0]  # 1-based inclusive → 0-based continuous
    assert coco["categories"][dog["category_id"] - 1]["name"] == "dog"
    assert [a["iscrowd"] for a in coco["annotations"][:2]] == [0, 1]  # difficult → ignored


@pytest.mark.parametrize("xml,message", [
    ("<annotation><size><width>3", "malformed XML"),
    ("<annotation><object><name>dog</name></object></annotation>", "missing <size><width>"),
    (VOC_XML.replace("dog", "dragon"), "class 'dragon'"),
    (VOC_XML.replace("<xmin>11</xmin>", "<xmin>eleven</xmin>"), "<bndbox><xmin> is 'eleven'"),
    ("<notes/>", "root element <notes>"),
])
def test_bad_voc_files_name_the_file_and_the_problem(tmp_path, xml, message):
    root = make_voc(tmp_path / "VOC")
    bad = root / "Annotations" / "000002.xml"
    bad.write_text(xml.format(name="000002") if "{name}" in xml else xml)
    with pytest.raises(DataError, match=message) as info:
        voc_to_coco(root)
    assert str(bad) in str(info.value)


def test_a_missing_voc_split_names_the_file(tmp_path):
    root = make_voc(tmp_path / "VOC")
    with pytest.raises(DataError, match="test.txt: no such VOC split file"):
        voc_to_coco(root, "test")


# ----------------------------------------------------------------------------------------------
# BDD100K
# ----------------------------------------------------------------------------------------------

BDD = [
    {"name": "a.jpg", "labels": [
        {"id": 1, "category": "car", "box2d": {"x1": 10, "y1": 20, "x2": 110, "y2": 70}},
        {"id": 2, "category": "person", "box2d": {"x1": 5, "y1": 5, "x2": 15, "y2": 40},
         "attributes": {"crowd": True}},
        {"id": 3, "category": "lane", "poly2d": [{"vertices": [[0, 0], [1, 1]]}]},
        {"id": 4, "category": "trailer", "box2d": {"x1": 1, "y1": 1, "x2": 2, "y2": 2}}]},
    {"name": "b.jpg", "labels": None},
]


def test_bdd_to_coco(tmp_path):
    path = tmp_path / "det_train.json"
    path.write_text(json.dumps(BDD))
    coco = bdd_to_coco(path)
    cocofile.validate(coco, "bdd")
    assert len(coco["images"]) == 2 and coco["images"][0]["width"] == 1280
    car, person = coco["annotations"]
    assert car["bbox"] == [10.0, 20.0, 100.0, 50.0]
    names = cocofile.class_names(coco)
    assert names[car["category_id"] - 1] == "car"
    assert names[person["category_id"] - 1] == "pedestrian" and person["iscrowd"] == 1
    assert coco["info"]["skipped"] == {"trailer": 1}
    path.write_text(json.dumps({"frames": BDD}))  # Scalabel layout
    assert len(bdd_to_coco(path)["annotations"]) == 2


@pytest.mark.parametrize("content,message", [
    ({"images": []}, "not a BDD100K label file"),
    ([{"labels": []}], "frame 0 has no 'name'"),
    ([{"name": "a.jpg", "labels": [{"category": "car", "box2d": {"x1": 1}}]}],
     "box2d must have numbers x1, y1, x2, y2"),
    ([{"name": "a.jpg", "labels": [{"box2d": {}}]}], "has no 'category'"),
])
def test_bad_bdd_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=message) as info:
        bdd_to_coco(path)
    assert str(path) in str(info.value)


# ----------------------------------------------------------------------------------------------
# D_verify and the proxy split
# ----------------------------------------------------------------------------------------------

def test_d_verify_has_one_image_per_category(embedded):
    train = load_coco(embedded.train_ann)
    small = d_verify(train, seed=0)
    assert 1 <= len(small["images"]) <= len(CATEGORIES)
    present = {a["category_id"] for a in small["annotations"]}
    assert present == {a["category_id"] for a in train["annotations"]}, "every category covered"
    assert d_verify(train, seed=0) == small
    assert {i["id"] for i in d_verify(train, seed=1)["images"]} != \
        {i["id"] for i in small["images"]} or len(train["images"]) <= len(CATEGORIES)


def test_d_verify_takes_at_least_min_images():
    """One image per category of a one-category data set is one image, trained and tested on
    itself: D_verify is filled up to min_images with further annotated images."""
    images = [{"id": k, "file_name": f"{k}.png", "width": 64, "height": 64} for k in range(1, 21)]
    annotations = [{"id": k, "image_id": k, "category_id": 1, "bbox": [4, 4, 20, 20],
                    "area": 400, "iscrowd": 0} for k in range(1, 16)]  # images 16-20: no boxes
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "crown"}], "info": {}}
    assert len(d_verify(coco, seed=0)["images"]) == 1
    filled = d_verify(coco, seed=0, min_images=8)
    ids = [i["id"] for i in filled["images"]]
    assert len(ids) == len(set(ids)) == 8 and max(ids) <= 15  # only annotated images
    assert d_verify(coco, seed=0, min_images=8) == filled
    assert {i["id"] for i in d_verify(coco, seed=1, min_images=8)["images"]} != set(ids)
    assert len(d_verify(coco, seed=0, min_images=100)["images"]) == 15  # every annotated image


def test_proxy_split_holds_out_a_random_validation_subset(embedded):
    train = load_coco(embedded.train_ann)
    rest, val = proxy_split(train, val_size=6, seed=0)
    ids_rest = {i["id"] for i in rest["images"]}
    ids_val = {i["id"] for i in val["images"]}
    assert len(ids_val) == 6 and not ids_rest & ids_val
    assert ids_rest | ids_val == {i["id"] for i in train["images"]}
    assert all(a["image_id"] in ids_val for a in val["annotations"])
    assert proxy_split(train, 6, seed=0)[1] == val
    assert {i["id"] for i in proxy_split(train, 6, seed=1)[1]["images"]} != ids_val
    with pytest.raises(ValueError, match="between 1 and 23"):
        proxy_split(train, 24)


# ----------------------------------------------------------------------------------------------
# prepare
# ----------------------------------------------------------------------------------------------

def test_prepare_embedded_voc_and_bdd(tmp_path, embedded, monkeypatch):
    monkeypatch.setenv("JAXLOSS_CACHE_DIR", str(tmp_path / "cache"))
    data = prepare("embedded", work_dir=tmp_path / "run", embedded_spec=SPEC)
    assert data.classes == CATEGORIES and data.train_ann != data.val_ann
    # embedded:SIZE: the same spec at another image side; its val split by default
    large = prepare("embedded:224", work_dir=tmp_path / "run_224", embedded_spec=SPEC)
    train, val = load_coco(large.train_ann), load_coco(large.val_ann)
    assert {im["width"] for im in train["images"] + val["images"]} == {224}
    assert len(train["images"]) == SPEC.num_train and len(val["images"]) == SPEC.num_val
    assert large.train_images != data.train_images

    voc = make_voc(tmp_path / "VOC", names=[f"{k:06d}" for k in range(10)])
    data = prepare(f"voc:{voc}", val="proxy:3", work_dir=tmp_path / "run_voc")
    assert len(load_coco(data.val_ann)["images"]) == 3
    assert len(load_coco(data.train_ann)["images"]) == 7
    assert data.train_images == voc / "JPEGImages"

    labels = tmp_path / "bdd.json"
    labels.write_text(json.dumps(BDD))
    images = tmp_path / "bdd_images"
    images.mkdir()
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (1280, 720)).save(images / name)
    data = prepare(f"bdd:{labels}", images=images, val="train", work_dir=tmp_path / "run_bdd")
    assert data.val_ann == data.train_ann and "car" in data.classes


def test_prepare_errors(tmp_path, embedded):
    with pytest.raises(DataError, match="unknown data spec"):
        prepare("imagenet", work_dir=tmp_path)
    with pytest.raises(DataError, match="embedded:SIZE takes the image side in px"):
        prepare("embedded:large", work_dir=tmp_path)
    with pytest.raises(DataError, match="'embedded:64': image_size must be at least 112"):
        prepare("embedded:64", work_dir=tmp_path)
    with pytest.raises(DataError, match="where its images are"):
        prepare(f"coco:{embedded.train_ann}", work_dir=tmp_path)
    with pytest.raises(DataError, match="no such COCO annotation file"):
        prepare("coco:/nonexistent/instances.json", images=tmp_path, work_dir=tmp_path)
    with pytest.raises(DataError, match="images are missing"):
        prepare(f"coco:{embedded.train_ann}", images=tmp_path, val="train", work_dir=tmp_path)
    voc = make_voc(tmp_path / "VOC")
    with pytest.raises(DataError, match="different categories"):
        prepare(f"coco:{embedded.train_ann}", images=embedded.images, val=f"voc:{voc}:trainval",
                work_dir=tmp_path)
