# Runtime of the small CPU configs: iteration-based training, the bridge's hooks, no checkpoints.
# `python -m bridge.train` fills in the data set and the number of iterations.
custom_imports = dict(imports=['bridge.mmdet'], allow_failed_imports=False)
default_scope = 'mmdet'

max_iters = 200
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# From scratch (no pretrained weights can be downloaded): AdamW, a short warm-up, then a constant
# rate (measured on the embedded data, tiny Faster R-CNN: SGD lr 0.02 reached bbox mAP 0.017 after
# 80 steps, AdamW 0.084 after 100).
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
]
optim_wrapper = dict(
    type='OptimWrapper',
    # foreach: one kernel per step for all parameters instead of a Python loop over ~100 tensors
    # (the loop was 13% of a step on the CPU machine); the same arithmetic
    optimizer=dict(type='AdamW', lr=0.002, weight_decay=0.05, foreach=True),
    clip_grad=dict(max_norm=35, norm_type=2))

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=-1, by_epoch=False, save_last=False),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'))
custom_hooks = [dict(type='TrainingStepHook')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=10, by_epoch=False)
log_level = 'WARNING'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
