from .cross_entropy import ClassWeightedCrossEntropyLoss
from .prompt_metric import (
                            ClsPromptLoss,
                            GuidanceTaps,
                            PatchPromptLoss,
                            prompt_anchor_loss,
                            prompts_present,
)

__all__ = [
    'ClassWeightedCrossEntropyLoss', 'prompt_anchor_loss', 'prompts_present', 'GuidanceTaps',
    'PatchPromptLoss', 'ClsPromptLoss'
]
