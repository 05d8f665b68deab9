# Cascade R-CNN, tiny ResNet-18-FPN, 128 px, CPU-sized: the Faster R-CNN tiny backbone, neck and RPN
# with three IoU-aware RoI stages, each CE + GIoU (weight 10 on decoded boxes, as in the release).
_base_ = './faster-rcnn_r18-tiny.py'

num_classes = 5
model = dict(
    type='CascadeRCNN',
    roi_head=dict(
        _delete_=True,
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=64,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=[
            dict(type='IoUShared2FCBBoxHead', in_channels=64, fc_out_channels=256,
                 roi_feat_size=7, num_classes=num_classes,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                 target_stds=[0.1, 0.1, 0.2, 0.2]),
                 reg_class_agnostic=True, reg_decoded_bbox=True,
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type='GIoULoss', loss_weight=10.0)),
            dict(type='IoUShared2FCBBoxHead', in_channels=64, fc_out_channels=256,
                 roi_feat_size=7, num_classes=num_classes,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                 target_stds=[0.05, 0.05, 0.1, 0.1]),
                 reg_class_agnostic=True, reg_decoded_bbox=True,
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type='GIoULoss', loss_weight=10.0)),
            dict(type='IoUShared2FCBBoxHead', in_channels=64, fc_out_channels=256,
                 roi_feat_size=7, num_classes=num_classes,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                 target_stds=[0.033, 0.033, 0.067, 0.067]),
                 reg_class_agnostic=True, reg_decoded_bbox=True,
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type='GIoULoss', loss_weight=10.0)),
        ]),
    train_cfg=dict(
        rpn_proposal=dict(max_per_img=300),
        rcnn=[
            dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=t, neg_iou_thr=t,
                               min_pos_iou=t, match_low_quality=False, ignore_iof_thr=-1),
                 sampler=dict(type='RandomSampler', num=128, pos_fraction=0.25, neg_pos_ub=-1,
                              add_gt_as_proposals=True),
                 pos_weight=-1, debug=False)
            for t in (0.5, 0.6, 0.7)
        ]))
