# ATSS tiny with CSE-Autoloss-B (searched on FCOS; the paper's generalization experiment):
# IoUATSSHead, B_cls and B_reg (weight 1.0 as in the release).
_base_ = './atss_r18-tiny.py'
model = dict(bbox_head=dict(
    type='IoUATSSHead',
    loss_cls=dict(_delete_=True, type='CSE-Autoloss-B_cls', use_sigmoid=True, loss_weight=1.0),
    loss_bbox=dict(_delete_=True, type='CSE-Autoloss-B_reg', loss_weight=1.0)))
