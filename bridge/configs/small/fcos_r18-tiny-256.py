# fcos_r18-tiny at 256 px, for the embedded data set with 320 px images (`--data embedded:320`):
# the same objects, at the same pixel sizes, on four times the background, so about four times
# the negative locations per positive (the imbalance a focal loss is for) and about four times the
# compute of the 128 px default. The proxy protocol that reproduces FL > BCE
# (docs/proxy-fidelity.md); see configs/search/proxy-fcos-256.toml.
_base_ = ['./fcos_r18-tiny.py']

image_scale = (256, 256)
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
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
