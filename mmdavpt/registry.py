"""Registration of mmdavpt modules into both OpenMMLab model and hook registries.

MMPretrain and MMSeg keep sibling registries (children of MMEngine's root), and a config's
``default_scope`` decides which one ``type=...`` is looked up in. A DA-VPT module or hook must
build from either kind of config, so :func:`register_model` and :func:`register_hook` register it
in both.
"""
from mmengine.registry import DefaultScope
from mmpretrain.registry import HOOKS as PRETRAIN_HOOKS
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmseg.registry import HOOKS as SEG_HOOKS
from mmseg.registry import MODELS as SEG_MODELS


def register_model(cls: type) -> type:
    """Class decorator: register ``cls`` under its name in MMPretrain's and MMSeg's ``MODELS``."""
    PRETRAIN_MODELS.register_module(module=cls)
    SEG_MODELS.register_module(module=cls)
    return cls


def register_hook(cls: type) -> type:
    """Class decorator: register ``cls`` under its name in MMPretrain's and MMSeg's ``HOOKS``."""
    PRETRAIN_HOOKS.register_module(module=cls)
    SEG_HOOKS.register_module(module=cls)
    return cls


def build_model(cfg: dict, scope: str = 'mmpretrain'):
    """Build a model in the ``scope`` ('mmpretrain' or 'mmseg') registry and default scope.

    The scope matters for what the model builds inside (e.g. its data preprocessor), whatever
    default scope the process happens to be in.
    """
    registries = {'mmpretrain': PRETRAIN_MODELS, 'mmseg': SEG_MODELS}
    if scope not in registries:
        raise ValueError(f"scope must be 'mmpretrain' or 'mmseg', got {scope!r}")
    with DefaultScope.overwrite_default_scope(scope):
        return registries[scope].build(cfg)
