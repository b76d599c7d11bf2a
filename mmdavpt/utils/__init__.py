from .compat import (
    CPUAmpOptimWrapper,
    NotACheckpointError,
    load_from_local_checked,
    mmengine_safe_globals,
    register_checkpoint_loader,
    register_mmengine_safe_globals,
)

__all__ = [
    'CPUAmpOptimWrapper', 'NotACheckpointError', 'load_from_local_checked',
    'mmengine_safe_globals', 'register_checkpoint_loader', 'register_mmengine_safe_globals'
]
