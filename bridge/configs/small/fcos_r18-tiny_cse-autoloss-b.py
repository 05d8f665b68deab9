# FCOS tiny with CSE-Autoloss-B: IoUFCOSHead (centerness trained towards the IoU, w = IoU at the
# ground-truth class, α = 0.25 outside the formula), B_cls and B_reg (weight 1) as in the release.
_base_ = './fcos_r18-tiny.py'
model = dict(bbox_head=dict(
    type='IoUFCOSHead',
    loss_cls=dict(_delete_=True, type='CSE-Autoloss-B_cls', use_sigmoid=True, loss_weight=1.0),
    loss_bbox=dict(_delete_=True, type='CSE-Autoloss-B_reg', loss_weight=1.0)))
