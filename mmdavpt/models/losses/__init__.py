from .prompt_metric import (
                            ClsPromptLoss,
                            PatchPromptLoss,
                            prompt_anchor_loss,
                            prompts_present,
)

__all__ = [
    'prompt_anchor_loss', 'prompts_present', 'PatchPromptLoss', 'ClsPromptLoss'
]
