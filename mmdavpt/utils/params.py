"""Tunable-parameter counts of models and model configs."""
from typing import Dict

from torch import nn

_config_counts: Dict[str, int] = {}


def strip_init_cfg(cfg):
    """A copy of a model config without any ``init_cfg`` (no pre-trained weights are read)."""
    if isinstance(cfg, dict):
        return type(cfg)({k: strip_init_cfg(v) for k, v in cfg.items() if k != 'init_cfg'})
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(strip_init_cfg(v) for v in cfg)
    return cfg


def build_model_on_meta(model_cfg: dict, *, scope: str = 'mmpretrain') -> nn.Module:
    """Build a model config in ``scope`` ('mmpretrain' or 'mmseg') on the ``meta`` device (no
    memory, no weights, no init)."""
    import torch

    from mmdavpt.registry import build_model
    with torch.device('meta'):
        return build_model(strip_init_cfg(model_cfg), scope)


def count_tunable(model: nn.Module) -> int:
    """Parameters with ``requires_grad`` (prompts, tuned biases, CLS token, head, ...)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_config_tunable(model_cfg: dict, *, scope: str = 'mmpretrain') -> int:
    """:func:`count_tunable` of a model config, built on the meta device; configs that differ
    only in their ``init_cfg`` are built once per process."""
    cfg = model_cfg.to_dict() if hasattr(model_cfg, 'to_dict') else model_cfg
    key = repr((scope, strip_init_cfg(cfg)))
    if key not in _config_counts:
        _config_counts[key] = count_tunable(build_model_on_meta(cfg, scope=scope))
    return _config_counts[key]
