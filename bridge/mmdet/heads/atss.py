"""``IoUATSSHead``: ATSS with the release's IoU recipe.

Differences from mmdet's ``ATSSHead.loss_by_feat_single`` (everything else is mmdet's code path):

* the centerness branch is trained towards the IoU of each positive anchor's decoded predicted box
  with its ground truth (detached, clamped to [1e-7, 1]) instead of the geometric centerness; each
  level's box loss is called with that IoU as its weight and ``avg_factor=1``, and the levels' sum
  is divided by the IoU sum over all levels, as the release's ATSS head does. What the loss makes
  of the weight is the loss's choice: mmdet's losses and ``SearchedLoss`` weigh each positive by its
  IoU (Σ IoU·loss / Σ IoU); ``SearchedLoss(release_weighting=True)`` does the release's arithmetic,
  which averages the weight to one scalar per call, so each level's loss is weighted by that
  level's mean IoU (Σ_levels mean IoU · Σ loss / Σ IoU);
* the IoU sum divides the box loss unless it is below 1e-12 (then 1), as in the release; mmdet's
  ``ATSSHead`` divides by at least 1, which shrinks the box loss whenever the IoUs sum to less than
  1 (few positives early in training);
* the classification loss gets ``iou=`` (the IoU at positives) when it accepts it.

ATSS decodes anchors and deltas into pixel boxes, so i, u, e are pixel areas (as in the release).
"""

from __future__ import annotations

from typing import List

import torch
from mmdet.models.dense_heads import ATSSHead
from mmdet.models.utils import multi_apply
from mmdet.registry import MODELS
from mmdet.utils import InstanceList, OptInstanceList, reduce_mean
from torch import Tensor

from bridge.boxes import aligned_iou
from bridge.mmdet.heads.common import iou_kwargs, sigmoid_loss_cfg

IOU_SUM_EPS = 1e-12
"""Below this the IoU sum does not divide the box loss (the release's ``EPS`` in its ATSS head)."""


@MODELS.register_module()
class IoUATSSHead(ATSSHead):
    """``ATSSHead`` trained with the IoU as centerness target and classification input w."""

    def __init__(self, *args, loss_cls: dict = dict(type="FocalLoss", use_sigmoid=True, gamma=2.0,
                                                     alpha=0.25, loss_weight=1.0), **kwargs):
        super().__init__(*args, loss_cls=sigmoid_loss_cfg(loss_cls), **kwargs)

    def loss_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     centernesses: List[Tensor], batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        # mmdet's ATSSHead.loss_by_feat, except for the IoU sum's floor (see the module docstring)
        featmap_sizes = [featmap.size()[-2:] for featmap in bbox_preds]
        assert len(featmap_sizes) == self.prior_generator.num_levels
        device = cls_scores[0].device
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas,
                                                        device=device)
        (anchor_list, labels_list, label_weights_list, bbox_targets_list, _bbox_weights_list,
         avg_factor) = self.get_targets(anchor_list, valid_flag_list, batch_gt_instances,
                                        batch_img_metas,
                                        batch_gt_instances_ignore=batch_gt_instances_ignore)
        avg_factor = reduce_mean(torch.tensor(avg_factor, dtype=torch.float, device=device)).item()
        losses_cls, losses_bbox, loss_centerness, iou_sums = multi_apply(
            self.loss_by_feat_single, anchor_list, cls_scores, bbox_preds, centernesses,
            labels_list, label_weights_list, bbox_targets_list, avg_factor=avg_factor)
        iou_sum = reduce_mean(sum(iou_sums)).item()
        if iou_sum < IOU_SUM_EPS:
            iou_sum = 1.0
        losses_bbox = [loss / iou_sum for loss in losses_bbox]
        return dict(loss_cls=losses_cls, loss_bbox=losses_bbox, loss_centerness=loss_centerness)

    def loss_by_feat_single(self, anchors: Tensor, cls_score: Tensor, bbox_pred: Tensor,
                            centerness: Tensor, labels: Tensor, label_weights: Tensor,
                            bbox_targets: Tensor, avg_factor: float) -> tuple:
        anchors = anchors.reshape(-1, 4)
        cls_score = cls_score.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels).contiguous()
        bbox_pred = bbox_pred.permute(0, 2, 3, 1).reshape(-1, 4)
        centerness = centerness.permute(0, 2, 3, 1).reshape(-1)
        bbox_targets = bbox_targets.reshape(-1, 4)
        labels = labels.reshape(-1)
        label_weights = label_weights.reshape(-1)

        pos_inds = ((labels >= 0) & (labels < self.num_classes)).nonzero().squeeze(1)
        iou = cls_score.new_ones(cls_score.shape[0])
        if len(pos_inds) > 0:
            pos_anchors = anchors[pos_inds]
            pos_pred_boxes = self.bbox_coder.decode(pos_anchors, bbox_pred[pos_inds])
            pos_target_boxes = bbox_targets[pos_inds]
            if not self.reg_decoded_bbox:
                pos_target_boxes = self.bbox_coder.decode(pos_anchors, pos_target_boxes)
            pos_iou = aligned_iou(pos_pred_boxes, pos_target_boxes)
            iou[pos_inds] = pos_iou
            loss_bbox = self.loss_bbox(pos_pred_boxes, pos_target_boxes, weight=pos_iou,
                                       avg_factor=1.0)
            loss_centerness = self.loss_centerness(centerness[pos_inds], pos_iou,
                                                   avg_factor=avg_factor)
            iou_sum = pos_iou.sum()
        else:
            loss_bbox = bbox_pred.sum() * 0
            loss_centerness = centerness.sum() * 0
            iou_sum = bbox_targets.new_tensor(0.)

        loss_cls = self.loss_cls(cls_score, labels, label_weights, avg_factor=avg_factor,
                                 **iou_kwargs(self.loss_cls, iou))
        return loss_cls, loss_bbox, loss_centerness, iou_sum
