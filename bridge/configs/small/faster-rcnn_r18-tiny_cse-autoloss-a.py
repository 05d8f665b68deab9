# Faster R-CNN tiny with CSE-Autoloss-A: A_cls on the RoI classifier (w = RoI IoU from the
# IoU-aware head), A_reg on decoded boxes, regression weight 10 as in the release.
_base_ = './faster-rcnn_r18-tiny.py'
model = dict(roi_head=dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='CSE-Autoloss-A_cls', loss_weight=1.0),
    loss_bbox=dict(_delete_=True, type='CSE-Autoloss-A_reg', loss_weight=10.0))))
