# The embedded data set at 128 px. The annotation files and image folders are placeholders that
# `python -m bridge.train` (bridge.config.apply_data) replaces with the prepared data set.
dataset_type = 'CocoDataset'
image_scale = (128, 128)
classes = ('box', 'disc', 'triangle', 'cross', 'diamond')

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        metainfo=dict(classes=classes),
        data_root='',
        ann_file='EMBEDDED/annotations/train.json',
        data_prefix=dict(img='EMBEDDED/images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        metainfo=dict(classes=classes),
        data_root='',
        ann_file='EMBEDDED/annotations/val.json',
        data_prefix=dict(img='EMBEDDED/images/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file='EMBEDDED/annotations/val.json', metric='bbox',
                     format_only=False)
test_evaluator = val_evaluator
