from .config_guard_hook import ConfigGuardHook
from .mapping_hook import SemanticMappingHook
from .rng_state_hook import RNGStateHook
from .tuned_only_checkpoint_hook import TunedOnlyCheckpointHook

__all__ = ['ConfigGuardHook', 'RNGStateHook', 'SemanticMappingHook', 'TunedOnlyCheckpointHook']
