"""Registration of mmdavpt modules into both OpenMMLab model and hook registries.

MMPretrain and MMSeg keep sibling registries (children of MMEngine's root), and a config's
``default_scope`` decides which one ``type=...`` is looked up in. A DA-VPT module or hook must
build from either kind of config, so :func:`register_model` and :func:`register_hook` register it
in both. MMSeg is optional (``mmdavpt[seg]``): without a usable MMSeg
(:func:`mmdavpt.utils.dependencies.mmseg_available`), they register in MMPretrain's only.
"""
from mmengine.registry import DefaultScope
from mmpretrain.registry import HOOKS as PRETRAIN_HOOKS
from mmpretrain.registry import MODELS as PRETRAIN_MODELS

from mmdavpt.utils.dependencies import mmseg_available, require_mmseg

#: Whether MMSeg's registries get mmdavpt's modules too.
WITH_MMSEG = mmseg_available()
if WITH_MMSEG:
    from mmseg.registry import HOOKS as SEG_HOOKS
    from mmseg.registry import MODELS as SEG_MODELS


def register_model(cls: type) -> type:
    """Class decorator: register ``cls`` under its name in MMPretrain's and MMSeg's ``MODELS``."""
    PRETRAIN_MODELS.register_module(module=cls)
    if WITH_MMSEG:
        SEG_MODELS.register_module(module=cls)
    return cls


def register_hook(cls: type) -> type:
    """Class decorator: register ``cls`` under its name in MMPretrain's and MMSeg's ``HOOKS``."""
    PRETRAIN_HOOKS.register_module(module=cls)
    if WITH_MMSEG:
        SEG_HOOKS.register_module(module=cls)
    return cls


def build_model(cfg: dict, scope: str = 'mmpretrain'):
    """Build a model in the ``scope`` ('mmpretrain' or 'mmseg') registry and default scope.

    The scope matters for what the model builds inside (e.g. its data preprocessor), whatever
    default scope the process happens to be in.

    Raises:
        ValueError: another scope.
        ImportError: 'mmseg' without a usable MMSeg (saying why).
    """
    if scope not in ('mmpretrain', 'mmseg'):
        raise ValueError(f"scope must be 'mmpretrain' or 'mmseg', got {scope!r}")
    if scope == 'mmseg':
        require_mmseg('building a model in the mmseg scope')
    registry = SEG_MODELS if scope == 'mmseg' else PRETRAIN_MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(cfg)
