# ATSS R50-FPN 1x COCO with CSE-Autoloss-B (searched on FCOS; paper: 40.5 AP vs 40.0): IoUATSSHead,
# B_cls weight 1, B_reg weight 1, as in the release. Ours: each box weighted by its own IoU; the
# release's arithmetic, which trained the published 40.5 AP: release_weighting=True in loss_bbox.
_base_ = './atss_r50_fpn_giou-w1_1x_coco.py'
model = dict(bbox_head=dict(
    type='IoUATSSHead',
    loss_cls=dict(_delete_=True, type='CSE-Autoloss-B_cls', use_sigmoid=True, loss_weight=1.0),
    loss_bbox=dict(_delete_=True, type='CSE-Autoloss-B_reg', loss_weight=1.0)))
