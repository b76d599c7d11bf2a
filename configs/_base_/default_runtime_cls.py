# Runtime of the mmdavpt classification configs: MMPretrain's defaults, mmdavpt registered,
# model selection on the validation split (the best-val checkpoint is kept for the single test),
# and the hooks every mmdavpt run has (default_hooks, so that a config's own custom_hooks do not
# drop them): ConfigGuardHook refuses to resume from or test a checkpoint of another config,
# RNGStateHook saves the random generators so that --resume continues exactly
# (docs/distributed.md).
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
        rule='greater'),
    config_guard=dict(type='ConfigGuardHook'),
    rng_state=dict(type='RNGStateHook'))

randomness = dict(seed=0, deterministic=False)
