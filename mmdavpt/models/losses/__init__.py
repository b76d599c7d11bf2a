from mmdavpt.registry import WITH_MMSEG

from .prompt_metric import ClsPromptLoss, PatchPromptLoss, prompt_anchor_loss, prompts_present

__all__ = ['prompt_anchor_loss', 'prompts_present', 'PatchPromptLoss', 'ClsPromptLoss']
if WITH_MMSEG:  # MMSeg's CrossEntropyLoss with class weights (mmdavpt[seg])
    from .cross_entropy import ClassWeightedCrossEntropyLoss  # noqa: F401
    __all__ += ['ClassWeightedCrossEntropyLoss']
