from mmdavpt.registry import WITH_MMSEG

from .backbones import DAVPTViT
from .classifiers import DAVPTImageClassifier
from .guidance import PromptGuidance, patch_labels_from_mask
from .losses import ClsPromptLoss, PatchPromptLoss, prompt_anchor_loss
from .mapping import SemanticMapping

__all__ = [
    'DAVPTViT', 'DAVPTImageClassifier', 'PromptGuidance', 'SemanticMapping', 'PatchPromptLoss',
    'ClsPromptLoss', 'prompt_anchor_loss', 'patch_labels_from_mask'
]
if WITH_MMSEG:  # the segmentor needs MMSeg (mmdavpt[seg])
    from .segmentors import DAVPTEncoderDecoder  # noqa: F401
    __all__ += ['DAVPTEncoderDecoder']
