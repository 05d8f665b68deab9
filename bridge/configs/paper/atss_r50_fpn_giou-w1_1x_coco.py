# ATSS R50-FPN 1x COCO, default losses: focal loss + GIoU with weight 1.0 (the release's ATSS
# baseline; MMDetection's config uses 2.0), geometric centerness. Paper: 40.0 AP.
_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['bridge.mmdet'], allow_failed_imports=False)
custom_hooks = [dict(type='TrainingStepHook')]
model = dict(bbox_head=dict(loss_bbox=dict(type='GIoULoss', loss_weight=1.0)))
