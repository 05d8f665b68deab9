"""``IoUShared2FCBBoxHead``: the two-stage RoI box head, with the IoU input for its classification loss.

Used by Faster R-CNN, Mask R-CNN (``roi_head.bbox_head``) and Cascade R-CNN (each stage of
``roi_head.bbox_head``). The only change from mmdet's ``BBoxHead.loss``: the classification loss
gets ``iou=`` [N], the IoU between each positive RoI's decoded predicted box (for its ground-truth
class when the regression is class-specific) and its ground-truth box, detached and clamped to
[1e-7, 1], and 1 for background RoIs (the loss sets w = 1 there anyway). Everything else, including
the regression loss call, is mmdet's own code path.
"""

from __future__ import annotations

from typing import Optional

import torch
from mmdet.models.losses import accuracy
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.registry import MODELS
from mmdet.structures.bbox import get_box_tensor

from bridge.boxes import aligned_iou
from bridge.mmdet.heads.common import iou_kwargs


def roi_ious(head, bbox_pred: torch.Tensor, rois: torch.Tensor, labels: torch.Tensor,
             bbox_targets: torch.Tensor) -> torch.Tensor:
    """IoU of each RoI's decoded prediction with its ground truth; 1 for background.

    Args:
      head: the BBoxHead (for num_classes, bbox_coder, reg_decoded_bbox, reg_class_agnostic).
      bbox_pred: [N, 4] or [N, 4·C] deltas; rois: [N, 5] (batch index, x1, y1, x2, y2);
      labels: [N] in 0..C (C = background); bbox_targets: [N, 4], decoded boxes when
      ``reg_decoded_bbox`` else deltas against the RoIs.

    Returns:
      [N], detached.
    """
    iou = torch.ones(labels.shape[0], dtype=bbox_pred.dtype, device=bbox_pred.device)
    positive = (labels >= 0) & (labels < head.num_classes)
    if not positive.any():
        return iou
    with torch.no_grad():
        pos_rois = rois[positive, 1:]
        pred = bbox_pred[positive].view(int(positive.sum()), -1, 4)
        pred = pred[:, 0] if head.reg_class_agnostic or pred.shape[1] == 1 else \
            pred[torch.arange(pred.shape[0], device=pred.device), labels[positive]]
        pred = get_box_tensor(head.bbox_coder.decode(pos_rois, pred))
        target = bbox_targets[positive]
        if not head.reg_decoded_bbox:
            target = get_box_tensor(head.bbox_coder.decode(pos_rois, target))
        iou[positive] = aligned_iou(pred, target)
    return iou


@MODELS.register_module()
class IoUShared2FCBBoxHead(Shared2FCBBoxHead):
    """``Shared2FCBBoxHead`` whose classification loss gets the RoIs' IoU (see the module docs)."""

    def loss(self, cls_score, bbox_pred, rois, labels, label_weights, bbox_targets, bbox_weights,
             reduction_override: Optional[str] = None) -> dict:
        extra = {}
        if cls_score is not None and cls_score.numel() > 0 and bbox_pred is not None and \
                getattr(self.loss_cls, "accepts_iou", False):
            extra = iou_kwargs(self.loss_cls, roi_ious(self, bbox_pred, rois, labels,
                                                       bbox_targets))
        if not extra:
            return super().loss(cls_score, bbox_pred, rois, labels, label_weights, bbox_targets,
                                bbox_weights, reduction_override)
        losses = super().loss(None, bbox_pred, rois, labels, label_weights, bbox_targets,
                              bbox_weights, reduction_override)
        # mmdet's classification part of BBoxHead.loss, with iou= added
        avg_factor = max(torch.sum(label_weights > 0).float().item(), 1.)
        out = self.loss_cls(cls_score, labels, label_weights, avg_factor=avg_factor,
                            reduction_override=reduction_override, **extra)
        if isinstance(out, dict):
            losses.update(out)
        else:
            losses["loss_cls"] = out
        if self.custom_activation:
            losses.update(self.loss_cls.get_accuracy(cls_score, labels))
        else:
            losses["acc"] = accuracy(cls_score, labels)
        return losses
