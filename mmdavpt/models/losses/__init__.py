from .cross_entropy import ClassWeightedCrossEntropyLoss
from .prompt_metric import ClsPromptLoss, PatchPromptLoss, prompt_anchor_loss, prompts_present

__all__ = [
    'ClassWeightedCrossEntropyLoss', 'prompt_anchor_loss', 'prompts_present', 'PatchPromptLoss',
    'ClsPromptLoss'
]
