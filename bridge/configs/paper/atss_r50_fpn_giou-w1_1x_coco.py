# ATSS R50-FPN 1x COCO, default losses: focal loss + GIoU with weight 1.0 (the release's ATSS
# baseline; MMDetection's config uses 2.0), geometric centerness. Paper: 40.0 AP.
_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['bridge.mmdet'], allow_failed_imports=False)
custom_hooks = [dict(type='TrainingStepHook')]
# Its lr is for 16 images per step (8 GPUs x 2): MMEngine's Runner scales it linearly to
# GPUs x images per GPU / 16 (python -m bridge.train --print-config shows the result).
auto_scale_lr = dict(enable=True, base_batch_size=16)
model = dict(bbox_head=dict(loss_bbox=dict(type='GIoULoss', loss_weight=1.0)))
