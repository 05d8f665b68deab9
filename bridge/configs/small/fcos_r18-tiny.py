# FCOS, tiny ResNet-18-FPN (base width 16, FPN 64 channels, 2 head convs), 128 px images, CPU-sized.
# Default losses: focal loss + GIoU (weight 1), geometric centerness, mmdet's FCOSHead
# (center sampling, norm_on_bbox, centerness on the regression branch: the "giou" FCOS recipe).
# The searched variant (fcos_r18-tiny_cse-autoloss-b.py) swaps in IoUFCOSHead and the B losses.
_base_ = ['./_base_/runtime.py', './_base_/data_embedded.py', './_base_/tiny_r18.py']

num_classes = 5
model = dict(
    type='FCOS',
    neck=dict(
        type='FPN',
        in_channels=[16, 32, 64, 128],
        out_channels=64,
        start_level=1,
        add_extra_convs='on_output',
        num_outs=5,
        relu_before_extra_convs=True),
    bbox_head=dict(
        type='FCOSHead',
        num_classes=num_classes,
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        strides=[8, 16, 32, 64, 128],
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
        norm_on_bbox=True,
        centerness_on_reg=True,
        center_sampling=True,
        conv_bias=True,
        dcn_on_last_conv=False,
        loss_cls=dict(
            type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    test_cfg=dict(
        nms_pre=500,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=50))
