# FCOS R50-FPN (caffe) 1x COCO with CSE-Autoloss-B (paper: 39.6 AP vs 38.8): IoUFCOSHead
# (centerness trained towards the IoU, box loss weighted by it, w = IoU at the ground-truth class,
# α = 0.25 outside the formula), B_cls weight 1, B_reg weight 1, as in the release.
# Ours: each box weighted by its own IoU, boxes in pixels. The release's arithmetic, which trained
# the published 39.6 AP: box_units='stride' in bbox_head and release_weighting=True in loss_bbox
# (README, "How the inputs are fed").
_base_ = './fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py'
model = dict(bbox_head=dict(
    type='IoUFCOSHead',
    loss_cls=dict(_delete_=True, type='CSE-Autoloss-B_cls', use_sigmoid=True, loss_weight=1.0),
    loss_bbox=dict(_delete_=True, type='CSE-Autoloss-B_reg', loss_weight=1.0)))
