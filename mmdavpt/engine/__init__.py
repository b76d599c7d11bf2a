from .hooks import ConfigGuardHook, RNGStateHook, SemanticMappingHook, TunedOnlyCheckpointHook

__all__ = ['ConfigGuardHook', 'RNGStateHook', 'SemanticMappingHook', 'TunedOnlyCheckpointHook']
