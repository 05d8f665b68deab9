# Faster R-CNN R50-FPN 1x COCO with CSE-Autoloss-A (paper Table 3: 38.5 AP vs 37.6 with CE + GIoU):
# A_cls (w = RoI IoU) with weight 1, A_reg on decoded boxes with weight 10, as in the release.
_base_ = './faster-rcnn_r50_fpn_giou_1x_coco.py'
model = dict(roi_head=dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='CSE-Autoloss-A_cls', loss_weight=1.0),
    loss_bbox=dict(_delete_=True, type='CSE-Autoloss-A_reg', loss_weight=10.0))))
