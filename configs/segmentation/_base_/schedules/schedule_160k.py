# MMSeg's 160k schedule with the hooks of every mmdavpt run (see ../default_runtime.py).
_base_ = ['mmseg::_base_/schedules/schedule_160k.py']

default_hooks = dict(
    config_guard=dict(type='ConfigGuardHook'), rng_state=dict(type='RNGStateHook'))
