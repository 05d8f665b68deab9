"""IoU-aware detection heads: mmdet's heads, subclassed and registered, feeding the IoU input w.

============================  ==================  =============================================
head (``type=``)               replaces            what changes (with any loss)
============================  ==================  =============================================
``IoUShared2FCBBoxHead``       Shared2FCBBoxHead   RoI classification loss gets ``iou=``: IoU of
                               (Faster, Cascade,   each positive RoI's decoded predicted box with
                               Mask R-CNN)         its ground truth (detached); background w = 1
``IoUFCOSHead``                FCOSHead            centerness trained towards the IoU; box loss
                                                   weighted by it; cls loss gets ``iou=``; boxes
                                                   decoded in pixels
``IoUATSSHead``                ATSSHead            centerness trained towards the IoU; box loss
                                                   weighted by it; cls loss gets ``iou=``
============================  ==================  =============================================

The IoU is passed only to losses whose ``accepts_iou`` is true (``SearchedLoss`` and the named
losses); stock mmdet losses are called exactly as mmdet calls them. The IoU is clamped to
[1e-7, 1] as in the release. For two-stage heads with a stock loss nothing changes at all; the
one-stage heads always use the IoU as the centerness target (the release's recipe).
"""

from bridge.mmdet.heads.atss import IoUATSSHead
from bridge.mmdet.heads.fcos import IoUFCOSHead
from bridge.mmdet.heads.roi import IoUShared2FCBBoxHead

__all__ = ["IoUATSSHead", "IoUFCOSHead", "IoUShared2FCBBoxHead"]
