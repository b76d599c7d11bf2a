from .davpt_vit import BIAS_GROUPS, DAVPTViT

__all__ = ['DAVPTViT', 'BIAS_GROUPS']
