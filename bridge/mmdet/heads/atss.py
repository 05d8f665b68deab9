"""``IoUATSSHead``: ATSS with the release's IoU recipe.

Differences from mmdet's ``ATSSHead.loss_by_feat_single`` (everything else is mmdet's code path):

* the centerness branch is trained towards the IoU of each positive anchor's decoded predicted box
  with its ground truth (detached, clamped to [1e-7, 1]) instead of the geometric centerness; the
  box loss is weighted by that IoU, and ``loss_by_feat`` (mmdet's, unchanged) averages it over the
  IoU sum (the release's ATSS head);
* the classification loss gets ``iou=`` (the IoU at positives) when it accepts it.

ATSS decodes anchors and deltas into pixel boxes, so i, u, e are pixel areas.
"""

from __future__ import annotations

import torch
from mmdet.models.dense_heads import ATSSHead
from mmdet.registry import MODELS
from torch import Tensor

from bridge.boxes import aligned_iou
from bridge.mmdet.heads.common import iou_kwargs, sigmoid_loss_cfg


@MODELS.register_module()
class IoUATSSHead(ATSSHead):
    """``ATSSHead`` trained with the IoU as centerness target and classification input w."""

    def __init__(self, *args, loss_cls: dict = dict(type="FocalLoss", use_sigmoid=True, gamma=2.0,
                                                     alpha=0.25, loss_weight=1.0), **kwargs):
        super().__init__(*args, loss_cls=sigmoid_loss_cfg(loss_cls), **kwargs)

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
