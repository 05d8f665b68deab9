# FCOS R50-FPN (caffe) 1x COCO, default losses: focal loss (α 0.25, γ 2, weight 1) + GIoU (weight 1),
# geometric centerness: MMDetection's "giou" FCOS recipe, the paper's FCOS baseline (38.8 AP).
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py'
custom_imports = dict(imports=['bridge.mmdet'], allow_failed_imports=False)
custom_hooks = [dict(type='TrainingStepHook')]
# Its lr is for 16 images per step (8 GPUs x 2): MMEngine's Runner scales it linearly to
# GPUs x images per GPU / 16 (python -m bridge.train --print-config shows the result).
auto_scale_lr = dict(enable=True, base_batch_size=16)
