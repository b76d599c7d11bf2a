from .prompt_metric import (
                            ClsPromptLoss,
                            GuidanceTaps,
                            PatchPromptLoss,
                            prompt_anchor_loss,
                            prompts_present,
)

__all__ = [
    'prompt_anchor_loss', 'prompts_present', 'GuidanceTaps', 'PatchPromptLoss', 'ClsPromptLoss'
]
