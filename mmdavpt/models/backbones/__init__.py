from .davpt_vit import BIAS_GROUPS, DAVPTViT, GuidanceTaps

__all__ = ['DAVPTViT', 'BIAS_GROUPS', 'GuidanceTaps']
