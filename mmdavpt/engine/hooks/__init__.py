from .mapping_hook import SemanticMappingHook

__all__ = ['SemanticMappingHook']
