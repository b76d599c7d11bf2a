from .hooks import SemanticMappingHook, TunedOnlyCheckpointHook

__all__ = ['SemanticMappingHook', 'TunedOnlyCheckpointHook']
