from .davpt_vit import BIAS_GROUPS, DAVPTViT, GuidanceTaps, davpt_backbones
from .tuned_only import load_tuned_only, strip_to_tuned_only

__all__ = ['DAVPTViT', 'BIAS_GROUPS', 'GuidanceTaps', 'davpt_backbones', 'load_tuned_only',
           'strip_to_tuned_only']
