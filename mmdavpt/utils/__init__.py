from .compat import (
    CPUAmpOptimWrapper,
    mmengine_safe_globals,
    register_mmengine_safe_globals,
)

__all__ = ['CPUAmpOptimWrapper', 'mmengine_safe_globals', 'register_mmengine_safe_globals']
