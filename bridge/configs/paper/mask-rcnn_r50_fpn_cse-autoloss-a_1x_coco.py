# Mask R-CNN R50-FPN 1x COCO with CSE-Autoloss-A on the box head (searched on Faster R-CNN;
# paper: 39.1 box AP vs 38.5): A_cls weight 1, A_reg weight 10.
_base_ = './mask-rcnn_r50_fpn_giou_1x_coco.py'
model = dict(roi_head=dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='CSE-Autoloss-A_cls', loss_weight=1.0),
    loss_bbox=dict(_delete_=True, type='CSE-Autoloss-A_reg', loss_weight=10.0))))
