from .mapping_hook import SemanticMappingHook
from .tuned_only_checkpoint_hook import TunedOnlyCheckpointHook

__all__ = ['SemanticMappingHook', 'TunedOnlyCheckpointHook']
