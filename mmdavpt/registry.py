"""Registration of mmdavpt modules into both OpenMMLab model registries.

MMPretrain and MMSeg keep sibling registries (children of MMEngine's root), and a config's
``default_scope`` decides which one ``type=...`` is looked up in. A DA-VPT module must build from
either kind of config, so :func:`register_model` registers it in both.
"""
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmseg.registry import MODELS as SEG_MODELS


def register_model(cls: type) -> type:
    """Class decorator: register ``cls`` under its name in MMPretrain's and MMSeg's ``MODELS``."""
    PRETRAIN_MODELS.register_module(module=cls)
    SEG_MODELS.register_module(module=cls)
    return cls


def build_model(cfg: dict):
    """Build a module registered with :func:`register_model` (or any MMPretrain model)."""
    return PRETRAIN_MODELS.build(cfg)
