# The part of the model every small config shares: ImageNet normalisation, padding to 32 px, and a
# tiny ResNet-18 (base width 16: stage channels 16, 32, 64, 128; no pretrained weights).
# GroupNorm, not BatchNorm: trained from scratch at 2 images per step, BN's batch statistics made
# the outcome a seed lottery (FCOS, 1,200 steps, FL: one seed in three stayed at mAP 0.03 while
# the others reached 0.15); with GN every seed took off (0.15-0.20). He et al., "Rethinking
# ImageNet Pre-training" (ICCV 2019), train detectors from scratch with GN for the same reason.
# Detector configs add type, neck and heads; the FPN's in_channels are [16, 32, 64, 128].
model = dict(
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=18,
        base_channels=16,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None))
