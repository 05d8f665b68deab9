# Mask R-CNN R50-FPN 1x COCO, default losses on the box head: CE (weight 1) + GIoU on decoded boxes
# (weight 10), IoU-aware RoI head (no change with CE). Paper: 38.5 box AP.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['bridge.mmdet'], allow_failed_imports=False)
custom_hooks = [dict(type='TrainingStepHook')]
# Its lr is for 16 images per step (8 GPUs x 2): MMEngine's Runner scales it linearly to
# GPUs x images per GPU / 16 (python -m bridge.train --print-config shows the result).
auto_scale_lr = dict(enable=True, base_batch_size=16)
model = dict(roi_head=dict(bbox_head=dict(
    type='IoUShared2FCBBoxHead',
    reg_decoded_bbox=True,
    loss_bbox=dict(_delete_=True, type='GIoULoss', loss_weight=10.0))))
