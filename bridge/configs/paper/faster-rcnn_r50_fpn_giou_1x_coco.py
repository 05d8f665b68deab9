# Faster R-CNN R50-FPN 1x COCO, default losses: CE (weight 1) + GIoU on decoded boxes (weight 10).
# MMDetection's own GIoU config, plus the bridge (IoU-aware RoI head, which with CE changes
# nothing, so that a searched loss is one line away; the training-step hook for error messages).
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_giou_1x_coco.py'
custom_imports = dict(imports=['bridge.mmdet'], allow_failed_imports=False)
custom_hooks = [dict(type='TrainingStepHook')]
# Its lr is for 16 images per step (8 GPUs x 2): MMEngine's Runner scales it linearly to
# GPUs x images per GPU / 16 (python -m bridge.train --print-config shows the result).
auto_scale_lr = dict(enable=True, base_batch_size=16)

model = dict(roi_head=dict(bbox_head=dict(type='IoUShared2FCBBoxHead')))
