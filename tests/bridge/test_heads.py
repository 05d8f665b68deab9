"""The IoU-aware heads feed the release's inputs: RoI IoU to the classification loss of two-stage
heads; IoU as the centerness target, box-loss weight and classification w in FCOS and ATSS; boxes
in pixels for the regression loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.structures import InstanceData
from torchvision.ops import box_iou

import bridge.mmdet  # noqa: F401  (registers)
from bridge.mmdet import SearchedLoss
from bridge.mmdet.heads.roi import roi_ious

CODER = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2])


def iou_of(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Aligned IoU by torchvision (an implementation independent of the bridge's)."""
    return torch.diagonal(box_iou(a.double(), b.double())).clamp(1e-7, 1).float()


class Recorder(torch.nn.Module):
    """A stand-in loss that records what the head passes to it and returns a connected zero."""

    def __init__(self, accepts_iou: bool = False):
        super().__init__()
        self.accepts_iou = accepts_iou
        self.calls: list[dict] = []

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None,
                iou=None):
        self.calls.append(dict(pred=pred.detach().clone(), target=target.detach().clone(),
                               weight=None if weight is None else weight.detach().clone(),
                               avg_factor=avg_factor, iou=iou))
        return pred.sum() * 0


# ----------------------------------------------------------------------------------------------
# two-stage
# ----------------------------------------------------------------------------------------------

def roi_batch(seed: int = 0):
    """RoIs, labels (3 = background) and ground-truth boxes for a 3-class RoI head."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(8, 2, generator=g) * 80
    boxes = torch.cat([xy, xy + 20 + torch.rand(8, 2, generator=g) * 40], 1)
    rois = torch.cat([torch.zeros(8, 1), boxes], 1)
    labels = torch.tensor([0, 2, 3, 1, 3, 3, 0, 3])
    gt = boxes + torch.randn(8, 4, generator=g) * 6
    return rois, labels, gt, g


def build_roi_head(loss_cls: dict, decoded: bool = True, agnostic: bool = False,
                   head: str = "IoUShared2FCBBoxHead", loss_bbox: dict | None = None):
    return MODELS.build(dict(
        type=head, in_channels=8, fc_out_channels=16, roi_feat_size=7, num_classes=3,
        bbox_coder=CODER, reg_class_agnostic=agnostic, reg_decoded_bbox=decoded,
        loss_cls=loss_cls, loss_bbox=loss_bbox or dict(type="GIoULoss", loss_weight=10.0)))


def roi_loss_args(head, decoded: bool, seed: int = 0):
    rois, labels, gt, g = roi_batch(seed)
    per_class = 4 if head.reg_class_agnostic else 12
    bbox_pred = torch.randn(8, per_class, generator=g) * 0.2
    targets = gt if decoded else head.bbox_coder.encode(rois[:, 1:], gt)
    positive = labels < 3
    targets = torch.where(positive[:, None], targets, torch.zeros_like(targets))
    cls_score = torch.randn(8, 4, generator=g)
    return dict(cls_score=cls_score, bbox_pred=bbox_pred, rois=rois, labels=labels,
                label_weights=torch.ones(8), bbox_targets=targets,
                bbox_weights=positive[:, None].float().expand(8, 4).contiguous()), gt


@pytest.mark.parametrize("decoded,agnostic", [(True, False), (False, False), (True, True)])
def test_roi_ious_are_the_decoded_predictions_iou_with_their_ground_truth(decoded, agnostic):
    head = build_roi_head(dict(type="CEI"), decoded, agnostic)
    args, gt = roi_loss_args(head, decoded)
    iou = roi_ious(head, args["bbox_pred"], args["rois"], args["labels"], args["bbox_targets"])
    labels = args["labels"]
    for n in range(8):
        if labels[n] == 3:
            assert iou[n] == 1.0
            continue
        delta = args["bbox_pred"][n].view(-1, 4)
        delta = delta[0] if agnostic else delta[labels[n]]
        pred = head.bbox_coder.decode(args["rois"][n:n + 1, 1:], delta[None])
        np.testing.assert_allclose(iou[n], iou_of(pred, gt[n:n + 1])[0], rtol=1e-5)


def test_roi_head_with_ce_equals_the_stock_head():
    stock = build_roi_head(dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
                           head="Shared2FCBBoxHead")
    ours = build_roi_head(dict(type="SearchedLoss", formula="CE"))
    args, _ = roi_loss_args(ours, True)
    a, b = stock.loss(**args), ours.loss(**args)
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(b[k].detach().numpy(), a[k].detach().numpy(), rtol=1e-6,
                                   err_msg=k)


def test_roi_head_passes_the_iou_to_the_classification_loss():
    head = build_roi_head(dict(type="CEI"))
    args, _ = roi_loss_args(head, True)
    iou = roi_ious(head, args["bbox_pred"], args["rois"], args["labels"], args["bbox_targets"])
    got = head.loss(**args)["loss_cls"]
    ce = torch.nn.functional.cross_entropy(args["cls_score"], args["labels"], reduction="none")
    np.testing.assert_allclose(got.item(), (iou * ce).sum().item() / 8, rtol=1e-5)


def test_roi_head_calls_stock_losses_as_mmdet_does():
    head = build_roi_head(dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0))
    head.loss_cls = Recorder(accepts_iou=False)
    args, _ = roi_loss_args(head, True)
    head.loss(**args)
    assert head.loss_cls.calls[0]["iou"] is None


# ----------------------------------------------------------------------------------------------
# one-stage
# ----------------------------------------------------------------------------------------------

GT = [InstanceData(bboxes=torch.tensor([[10.0, 12.0, 62.0, 70.0], [70.0, 20.0, 121.0, 110.0]]),
                   labels=torch.tensor([0, 2])),
      InstanceData(bboxes=torch.tensor([[30.0, 40.0, 100.0, 96.0]]), labels=torch.tensor([1]))]
METAS = [dict(img_shape=(128, 128), pad_shape=(128, 128), batch_input_shape=(128, 128))] * 2


def features(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 8, 128 // s, 128 // s, generator=g) for s in (8, 16, 32, 64, 128)]


def recorded_head(cfg: dict):
    head = MODELS.build(cfg)
    head.train()
    head.loss_cls = Recorder(accepts_iou=True)
    head.loss_bbox = Recorder()
    head.loss_centerness = Recorder()
    return head


def check_iou_recipe(head, calls_cls, calls_bbox, calls_ctr):
    gt_boxes = torch.cat([g.bboxes for g in GT])
    assert calls_bbox, "no positive samples"
    for cls, box, ctr in zip(calls_cls, calls_bbox, calls_ctr):
        iou = iou_of(box["pred"], box["target"])
        # regression targets are the ground-truth boxes themselves, in pixels
        match = (box["target"][:, None, :] - gt_boxes[None]).abs().amax(-1).amin(1)
        assert float(match.max()) < 1e-3
        np.testing.assert_allclose(box["weight"], iou, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(ctr["target"], iou, rtol=1e-5, atol=1e-7)
        labels = cls["target"]
        positive = labels < head.num_classes
        np.testing.assert_allclose(cls["iou"][positive], iou, rtol=1e-5, atol=1e-7)
        assert torch.all(cls["iou"][~positive] == 1)


FCOS = dict(type="IoUFCOSHead", num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1,
            strides=[8, 16, 32, 64, 128], norm_on_bbox=True, centerness_on_reg=True,
            center_sampling=True, conv_bias=True, norm_cfg=None,
            loss_cls=dict(type="CSE-Autoloss-B_cls"),
            loss_bbox=dict(type="CSE-Autoloss-B_reg"),
            loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0))


def test_fcos_head_trains_centerness_towards_the_iou_and_feeds_it_to_the_losses():
    head = recorded_head(FCOS)
    assert head.cls_out_channels == 3  # use_sigmoid=True added for the searched loss
    head.loss_by_feat(*head(features()), GT, METAS)
    check_iou_recipe(head, head.loss_cls.calls, head.loss_bbox.calls, head.loss_centerness.calls)
    box = head.loss_bbox.calls[0]
    np.testing.assert_allclose(box["avg_factor"], box["weight"].sum().item(), rtol=1e-5)


def test_fcos_head_with_searched_losses_trains_a_step():
    head = MODELS.build(FCOS)
    head.train()
    losses = head.loss_by_feat(*head(features()), GT, METAS)
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)


ATSS = dict(type="IoUATSSHead", num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1,
            norm_cfg=None,
            anchor_generator=dict(type="AnchorGenerator", ratios=[1.0], octave_base_scale=8,
                                  scales_per_octave=1, strides=[8, 16, 32, 64, 128]),
            bbox_coder=CODER,
            loss_cls=dict(type="CSE-Autoloss-B_cls"),
            loss_bbox=dict(type="CSE-Autoloss-B_reg"),
            loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
            train_cfg=dict(assigner=dict(type="ATSSAssigner", topk=9), allowed_border=-1,
                           pos_weight=-1, debug=False))


def test_atss_head_trains_centerness_towards_the_iou_and_feeds_it_to_the_losses():
    head = recorded_head(ATSS)
    assert head.cls_out_channels == 3
    head.loss_by_feat(*head(features(1)), GT, METAS)
    # one call per level; levels without positives call only the classification loss
    with_pos = [c for c in head.loss_cls.calls if (c["target"] < 3).any()]
    check_iou_recipe(head, with_pos, head.loss_bbox.calls, head.loss_centerness.calls)


def test_one_stage_heads_with_stock_losses_get_no_iou_argument():
    cfg = dict(FCOS, loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25,
                                   loss_weight=1.0),
               loss_bbox=dict(type="GIoULoss", loss_weight=1.0))
    head = MODELS.build(cfg)
    head.train()
    head.loss_cls = Recorder(accepts_iou=False)
    head.loss_by_feat(*head(features()), GT, METAS)
    assert head.loss_cls.calls[0]["iou"] is None


def test_searched_loss_in_a_stock_one_stage_head_without_iou_reads_no_w():
    cfg = dict(FCOS, type="FCOSHead", loss_cls=dict(type="SearchedLoss", formula="FL",
                                                    use_sigmoid=True))
    head = MODELS.build(cfg)
    head.train()
    assert isinstance(head.loss_cls, SearchedLoss)
    head.loss_by_feat(*head(features()), GT, METAS)  # FL reads no w: fine in a stock head
    cfg["loss_cls"] = dict(type="CSE-Autoloss-B_cls", use_sigmoid=True)
    head = MODELS.build(cfg)
    head.train()
    with pytest.raises(ValueError, match="IoUFCOSHead"):
        head.loss_by_feat(*head(features()), GT, METAS)


def test_fcos_head_in_stride_units_passes_the_releases_boxes():
    """box_units='stride': the distances are decoded around the pixel points as they are, so each
    target box is its ground truth box shifted to the point and shrunk by the point's stride."""
    head = recorded_head(dict(FCOS, box_units="stride"))
    head.loss_by_feat(*head(features()), GT, METAS)
    box = head.loss_bbox.calls[0]
    gt_sizes = torch.cat([g.bboxes for g in GT])
    gt_sizes = gt_sizes[:, 2:] - gt_sizes[:, :2]
    sizes = box["target"][:, 2:] - box["target"][:, :2]
    # every target's size is a ground truth's size over one of the strides
    ratios = sizes[:, None, :] / gt_sizes[None]  # [positives, gts, 2]
    strides = torch.tensor(FCOS["strides"], dtype=torch.float32)
    fits = ((ratios[..., None] - 1 / strides).abs() < 1e-4).all(2).any(-1).any(-1)
    assert bool(fits.all())
    assert float(sizes.max()) < 20  # not pixels (the ground truths are 50 to 90 px wide)
    np.testing.assert_allclose(box["weight"], iou_of(box["pred"], box["target"]), rtol=1e-5,
                               atol=1e-7)


@pytest.mark.parametrize("change, words", [(dict(box_units="px"), "box_units must be"),
                                           (dict(box_units="stride", norm_on_bbox=False),
                                            "needs norm_on_bbox")])
def test_fcos_head_rejects_box_units_it_cannot_give(change, words):
    with pytest.raises(ValueError, match=words):
        MODELS.build(dict(FCOS, **change))
