"""The bridge's configs and the config editing of ``python -m bridge.train``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.structures import InstanceData

import bridge.mmdet  # noqa: F401  (registers)
from bridge import config as configs
from bridge.data import DetectionData

register_all_modules(init_default_scope=True)  # as the Runner does (default_scope)

PAPER = sorted((configs.CONFIG_DIR / "paper").glob("*.py"))
SMALL = sorted(p for p in (configs.CONFIG_DIR / "small").glob("*.py"))

# detector → (classification loss, box loss weights) per REFERENCE.md ("Loss weights")
EXPECTED = {
    "faster-rcnn_r50_fpn_giou": ("CrossEntropyLoss", "GIoULoss", 1.0, 10.0, "IoUShared2FCBBoxHead"),
    "faster-rcnn_r50_fpn_cse-autoloss-a": ("CSE-Autoloss-A_cls", "CSE-Autoloss-A_reg", 1.0, 10.0,
                                           "IoUShared2FCBBoxHead"),
    "mask-rcnn_r50_fpn_giou": ("CrossEntropyLoss", "GIoULoss", 1.0, 10.0, "IoUShared2FCBBoxHead"),
    "mask-rcnn_r50_fpn_cse-autoloss-a": ("CSE-Autoloss-A_cls", "CSE-Autoloss-A_reg", 1.0, 10.0,
                                         "IoUShared2FCBBoxHead"),
    "cascade-rcnn_r50_fpn_giou": ("CrossEntropyLoss", "GIoULoss", 1.0, 10.0,
                                  "IoUShared2FCBBoxHead"),
    "cascade-rcnn_r50_fpn_cse-autoloss-a": ("CSE-Autoloss-A_cls", "CSE-Autoloss-A_reg", 1.0, 10.0,
                                            "IoUShared2FCBBoxHead"),
    "fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou": ("FocalLoss", "GIoULoss", 1.0,
                                                                     1.0, "FCOSHead"),
    "fcos_r50-caffe_fpn_gn-head_cse-autoloss-b": ("CSE-Autoloss-B_cls", "CSE-Autoloss-B_reg", 1.0,
                                                  1.0, "IoUFCOSHead"),
    "atss_r50_fpn_giou-w1": ("FocalLoss", "GIoULoss", 1.0, 1.0, "ATSSHead"),
    "atss_r50_fpn_cse-autoloss-b": ("CSE-Autoloss-B_cls", "CSE-Autoloss-B_reg", 1.0, 1.0,
                                    "IoUATSSHead"),
}


def heads(cfg):
    return [h for h, _ in configs.detection_heads(cfg.model)]


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_configs_use_the_papers_losses_and_weights(path):
    cfg = configs.load(path)
    name = path.stem.replace("_1x_coco", "")
    cls, reg, w_cls, w_reg, head_type = EXPECTED[name]
    assert cfg.custom_imports["imports"] == ["bridge.mmdet"]
    assert cfg.train_cfg["max_epochs"] == 12  # 1x schedule
    assert cfg.model.backbone.depth == 50 and cfg.model.neck.type == "FPN"
    for head in heads(cfg):
        assert head.type == head_type
        assert (head.loss_cls.type, head.loss_bbox.type) == (cls, reg)
        assert (head.loss_cls.get("loss_weight", 1.0), head.loss_bbox.loss_weight) == (w_cls, w_reg)
        if "roi_head" in cfg.model:
            assert head.reg_decoded_bbox  # box losses on decoded boxes
    assert len(heads(cfg)) == (3 if "cascade" in name else 1)


@pytest.mark.parametrize("path", PAPER + SMALL, ids=lambda p: p.stem)
def test_configs_build_and_run_a_training_step(path):
    cfg = configs.load(path)
    if "init_cfg" in cfg.model.backbone:
        cfg.model.backbone.init_cfg = None  # no downloads in tests
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    torch.manual_seed(0)
    sample = DetDataSample(metainfo=dict(img_shape=(96, 96), pad_shape=(96, 96),
                                         batch_input_shape=(96, 96), ori_shape=(96, 96),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[8.0, 10.0, 60.0, 70.0],
                                                            [40.0, 30.0, 90.0, 88.0]]),
                                       labels=torch.tensor([0, 1]))
    if "mask" in path.stem:
        from mmdet.structures.mask import BitmapMasks

        masks = torch.zeros(2, 96, 96, dtype=torch.uint8)
        masks[0, 10:70, 8:60] = 1
        masks[1, 30:88, 40:90] = 1
        sample.gt_instances.masks = BitmapMasks(masks.numpy(), 96, 96)
    losses = model.loss(torch.randn(1, 3, 96, 96), [sample])
    total = sum(v.sum() for k, v in losses.items() if "loss" in k
                for v in (v if isinstance(v, list) else [v]))
    assert torch.isfinite(total)
    total.backward()


def test_every_small_config_has_the_bridge_hooks_and_no_pretrained_weights():
    for path in SMALL:
        cfg = configs.load(path)
        assert cfg.model.backbone.init_cfg is None, path.name
        assert cfg.model.backbone.depth == 18, path.name
        assert {"type": "TrainingStepHook"} in cfg.custom_hooks, path.name


# ----------------------------------------------------------------------------------------------
# editing
# ----------------------------------------------------------------------------------------------

def test_set_losses_switches_to_searched_losses_and_iou_heads():
    cfg = configs.load("cascade-rcnn_r50_fpn_giou_1x_coco")
    configs.set_losses(cfg, "CSE-Autoloss-A_cls", "(1 - i/u) + (1 - (i + 2)/e)")
    for head in heads(cfg):
        assert head.type == "IoUShared2FCBBoxHead"
        assert head.loss_cls == dict(type="SearchedLoss", formula="CSE-Autoloss-A_cls",
                                     branch="cls", loss_weight=1.0)
        assert head.loss_bbox.formula == "1 - i / u + (1 - (i + 2) / e)"
        assert head.loss_bbox.loss_weight == 10.0 and head.reg_decoded_bbox
    cfg = configs.load("fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco")
    configs.set_losses(cfg, "-w*y*log(sigmoid(x)) - (1 - y)*sigmoid(x)^2*log(1 - sigmoid(x))",
                       "default")
    head = cfg.model.bbox_head
    assert head.type == "IoUFCOSHead" and head.loss_cls.branch == "cls_binary"
    assert head.loss_cls.use_sigmoid and head.loss_bbox.type == "GIoULoss"


def test_set_losses_rejects_a_loss_of_the_wrong_branch():
    cfg = configs.load("fcos_r18-tiny")
    with pytest.raises(ValueError, match="cls loss; this head needs a cls_binary loss"):
        configs.set_losses(cfg, "CSE-Autoloss-A_cls")
    configs.set_losses(cfg, None, None)  # nothing to do
    assert cfg.model.bbox_head.type == "FCOSHead"


def test_apply_data_points_every_loader_at_the_data_and_sizes_every_head(tmp_path):
    cfg = configs.load("cascade-rcnn_r50_fpn_giou_1x_coco")
    data = DetectionData(("a", "b"), tmp_path / "t.json", tmp_path / "ti",
                         tmp_path / "v.json", tmp_path / "vi", "test")
    configs.apply_data(cfg, data)
    assert cfg.train_dataloader.dataset.ann_file == str(tmp_path / "t.json")
    assert cfg.val_dataloader.dataset.data_prefix.img == str(tmp_path / "vi") + "/"
    assert cfg.test_evaluator.ann_file == str(tmp_path / "v.json")
    assert cfg.val_dataloader.dataset.metainfo == dict(classes=("a", "b"))
    assert all(h.num_classes == 2 for h in heads(cfg))
    mask = configs.load("mask-rcnn_r50_fpn_giou_1x_coco")
    configs.apply_data(mask, data)
    assert mask.model.roi_head.mask_head.num_classes == 2


def test_set_iters_makes_an_epoch_schedule_iteration_based():
    cfg = configs.load("faster-rcnn_r50_fpn_giou_1x_coco")
    configs.set_iters(cfg, 30)
    assert cfg.train_cfg == dict(type="IterBasedTrainLoop", max_iters=30, val_interval=30)
    assert all(s.get("by_epoch") is False for s in cfg.param_scheduler)
    assert cfg.train_dataloader.sampler.type == "InfiniteSampler"


def test_find_names_the_known_configs():
    assert configs.find("fcos_r18-tiny").parent.name == "small"
    assert configs.find("atss_r50_fpn_cse-autoloss-b_1x_coco.py").parent.name == "paper"
    with pytest.raises(FileNotFoundError, match="fcos_r18-tiny"):
        configs.find("no-such-config")


def test_the_readme_one_line_config_works(tmp_path):
    """The bridge page's example (docs/bridge.md), verbatim: inherit a config, change one line."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "bridge.md").read_text()
    section = page[page.index("**One config line.**"):]
    block = section[section.index("```python") + len("```python"):section.index("```\n", 10)]
    lines = [line for line in block.strip().splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("_base_ = 'bridge/configs/")
    root = Path(__file__).resolve().parents[2]
    path = tmp_path / "my_config.py"
    path.write_text(lines[0].replace("'bridge/configs/", f"'{root}/bridge/configs/") + "\n"
                    + lines[1] + "\n")
    cfg = configs.load(path)
    cfg.model.backbone.init_cfg = None
    head = MODELS.build(cfg.model).roi_head.bbox_head
    assert head.loss_cls.formula == "-dot((1 + sin(w)) * y, log(softmax(x)))"
    assert type(head).__name__ == "IoUShared2FCBBoxHead"
