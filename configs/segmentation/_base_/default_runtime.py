# Runtime of the mmdavpt segmentation configs: MMSeg's defaults, mmdavpt registered, and the hooks
# every mmdavpt run has (default_hooks, so that a config's own custom_hooks do not drop them):
# ConfigGuardHook refuses to resume from or test a checkpoint of another config, RNGStateHook
# saves the random generators so that --resume continues exactly (docs/distributed.md).
# MMSeg keeps default_hooks in its schedules: configs that inherit one of them get these hooks
# from ./schedules/ instead (a dict key may come from one base only).
_base_ = ['mmseg::_base_/default_runtime.py']

custom_imports = dict(imports=['mmdavpt', 'mmdavpt.datasets'], allow_failed_imports=False)
default_hooks = dict(
    config_guard=dict(type='ConfigGuardHook'), rng_state=dict(type='RNGStateHook'))
