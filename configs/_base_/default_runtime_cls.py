# Runtime of the mmdavpt classification configs: MMPretrain's defaults, mmdavpt registered,
# model selection on the validation split (the best-val checkpoint is kept for the single test).
_base_ = ['mmpretrain::_base_/default_runtime.py']

custom_imports = dict(imports=['mmdavpt', 'mmdavpt.datasets'], allow_failed_imports=False)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    # `save_best` keeps `best_accuracy_top1_epoch_N.pth` (val split); `interval` keeps the latest
    # periodic checkpoint for --resume.
    checkpoint=dict(
        type='CheckpointHook',
        interval=10,
        max_keep_ckpts=1,
        save_best='accuracy/top1',
        rule='greater'))

randomness = dict(seed=0, deterministic=False)
