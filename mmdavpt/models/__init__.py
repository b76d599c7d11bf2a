from .backbones import DAVPTViT
from .classifiers import DAVPTImageClassifier
from .guidance import PromptGuidance, patch_labels_from_mask
from .losses import ClsPromptLoss, PatchPromptLoss, prompt_anchor_loss
from .mapping import SemanticMapping
from .segmentors import DAVPTEncoderDecoder

__all__ = [
    'DAVPTViT', 'DAVPTImageClassifier', 'DAVPTEncoderDecoder', 'PromptGuidance',
    'SemanticMapping', 'PatchPromptLoss', 'ClsPromptLoss', 'prompt_anchor_loss',
    'patch_labels_from_mask'
]
