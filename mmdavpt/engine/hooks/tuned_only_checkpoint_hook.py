"""Checkpoints that hold only what DA-VPT trains (prompts, tuned biases, CLS, head, mapping)."""
from typing import Set

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS as PRETRAIN_HOOKS
from mmseg.registry import HOOKS as SEG_HOOKS
from torch import nn

from mmdavpt.models.backbones import DAVPTViT


def frozen_backbone_keys(model: nn.Module) -> Set[str]:
    """State-dict keys of the frozen parameters of every :class:`DAVPTViT` in ``model``: what a
    tuned-only checkpoint leaves out."""
    return {f'{name}.{n}' if name else n for name, module in model.named_modules()
            if isinstance(module, DAVPTViT)
            for n, p in module.named_parameters() if not p.requires_grad}


class TunedOnlyCheckpointHook(Hook):
    """Drop the frozen backbone weights from every checkpoint the runner saves.

    A ViT-B DA-VPT checkpoint shrinks from ~330 MB to about a megabyte. Loading one (``load_from``,
    ``--resume``, ``tools/test.py``) puts the tuned tensors on top of the pre-trained backbone named
    in the config's ``init_cfg``, which :class:`DAVPTViT` loads first when it sees such a state
    dict. Buffers (the class -> prompt mapping, BatchNorm statistics of heads) and every tensor
    outside the DAVPTViT backbone are kept.
    """

    priority = 'LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        frozen = frozen_backbone_keys(model)
        if not frozen:
            raise RuntimeError('TunedOnlyCheckpointHook needs a DAVPTViT backbone')
        state = checkpoint['state_dict']
        for key in frozen:
            state.pop(key, None)
        checkpoint.setdefault('meta', {})['davpt_tuned_only'] = True


PRETRAIN_HOOKS.register_module(module=TunedOnlyCheckpointHook)
SEG_HOOKS.register_module(module=TunedOnlyCheckpointHook)
