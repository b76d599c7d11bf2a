"""Tuned-only checkpoints: what DA-VPT trains (prompts, tuned biases, CLS, head, mapping), saved
without the frozen backbone and loaded on top of the pre-trained one.

Everything about them lives here: which keys are left out (:func:`frozen_backbone_keys`), the
stripping of a checkpoint (:func:`strip_to_tuned_only`, which ``TunedOnlyCheckpointHook`` calls
before every save), the meta record, and the loading on top of the pre-trained backbone
(:func:`load_tuned_only`, which :class:`DAVPTViT` calls from a ``load_state_dict`` pre-hook, so
every way of loading goes through it: ``tools/test.py``, ``load_from``, ``--resume``,
``mmengine.runner.load_checkpoint``).

A tuned-only checkpoint also records a fingerprint of the frozen backbone it was trained on
(:func:`frozen_fingerprint`), and is refused on a backbone whose frozen weights differ: prompts and
a head trained on one ViT give wrong results on another ViT of the same shape.

The functions take the backbones they work on (``{module name: backbone}``, e.g.
``davpt_backbones(model)``): a backbone here is a module with frozen parameters
(``requires_grad=False``), an ``init_cfg``, ``load_pretrained(checkpoint)`` and
``pretrained_loaded``, as :class:`DAVPTViT` has.
"""
import hashlib
from typing import Mapping, Optional, Set

import torch
from torch import Tensor, nn

#: ``checkpoint['meta']`` key: ``True`` in a tuned-only checkpoint.
META_FLAG = 'davpt_tuned_only'
#: ``checkpoint['meta']`` key: ``{backbone name: dict(fingerprint=digest, pretrained=file)}``, what
#: each frozen backbone was when the checkpoint was saved (for people; the loader reads the
#: state-dict entry below).
META_BACKBONES = 'davpt_frozen_backbones'
#: State-dict key, under the backbone's prefix (``backbone.frozen_fingerprint``), of the
#: fingerprint tensor. It travels in the state dict because a ``load_state_dict`` pre-hook sees
#: only the state dict, and every loading path passes through one.
FINGERPRINT_KEY = 'frozen_fingerprint'
#: Tolerances of the fingerprint comparison: float64 sums of the same float32 weights agree to
#: ~1e-12 on any device; another backbone, or the same one rounded to 16 bits, does not.
FINGERPRINT_RTOL, FINGERPRINT_ATOL = 1e-6, 1e-9


def _key(name: str, key: str) -> str:
    return f'{name}.{key}' if name else key


def frozen_backbone_keys(backbones: Mapping[str, nn.Module]) -> Set[str]:
    """State-dict keys of the frozen parameters of ``backbones`` (``{module name: backbone}``):
    what a tuned-only checkpoint leaves out."""
    return {_key(name, n) for name, module in backbones.items()
            for n, p in module.named_parameters() if not p.requires_grad}


def fingerprint_keys(backbones: Mapping[str, nn.Module]) -> Set[str]:
    """State-dict keys of the fingerprints a tuned-only checkpoint of ``backbones`` holds."""
    return {_key(name, FINGERPRINT_KEY) for name in backbones}


@torch.no_grad()
def frozen_fingerprint(backbone: nn.Module) -> Tensor:
    """A cheap fingerprint of the frozen parameters of ``backbone``.

    Returns:
        K x 7 float64 on the CPU, one row per frozen parameter in name order: number of elements,
        sum, sum of absolute values (both over every element, accumulated in float64), and the
        values at 4 evenly spaced flat positions (first and last included). One read of the
        weights (well under a second for ViT-L on a CPU); the same weights give the same numbers
        on any device up to float64 rounding, and in any file layout the converters read (the
        fingerprint is of the loaded parameters, not of the file).
    """
    rows = []
    for _, p in sorted(backbone.named_parameters()):
        if p.requires_grad:
            continue
        flat = p.detach().reshape(-1)
        if flat.numel() == 0:
            rows.append(torch.zeros(7, dtype=torch.float64))
            continue
        n = flat.numel()  # positions in integer arithmetic: the same on every device
        picks = flat[torch.tensor([(n - 1) * k // 3 for k in range(4)], device=flat.device)]
        rows.append(torch.cat([
            torch.tensor([float(flat.numel())], dtype=torch.float64),
            torch.stack([flat.sum(dtype=torch.float64), flat.abs().sum(dtype=torch.float64)]).cpu(),
            picks.double().cpu()]))
    return torch.stack(rows) if rows else torch.zeros(0, 7, dtype=torch.float64)


def fingerprint_digest(fingerprint: Tensor) -> str:
    """A short name of a fingerprint for messages (12 hex digits; 5 significant digits)."""
    text = ','.join(f'{v:.4e}' for v in fingerprint.flatten().tolist())
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _pretrained_file(backbone: nn.Module) -> Optional[str]:
    """The pre-trained file ``init_cfg`` names, if it names one."""
    cfg = backbone.init_cfg
    if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
        return cfg.get('checkpoint') if isinstance(cfg.get('checkpoint'), str) else \
            'a state dict'
    return None


def strip_to_tuned_only(checkpoint: dict, backbones: Mapping[str, nn.Module]) -> None:
    """Turn a checkpoint (``Runner.save_checkpoint``'s dict) of a model with ``backbones``
    (``{module name: backbone}``) into a tuned-only one.

    Drops the frozen backbone parameters from ``checkpoint['state_dict']``, adds each backbone's
    fingerprint (``{name}.frozen_fingerprint``) and records ``meta['davpt_tuned_only'] = True``
    and ``meta['davpt_frozen_backbones']``.

    Raises:
        RuntimeError: ``backbones`` have no frozen weights (nothing to leave out).
    """
    frozen = frozen_backbone_keys(backbones)
    if not frozen:
        raise RuntimeError('TunedOnlyCheckpointHook needs a DAVPTViT backbone with frozen '
                           'weights')
    state = checkpoint['state_dict']
    for key in frozen:
        state.pop(key, None)
    meta = checkpoint.setdefault('meta', {})
    meta[META_FLAG] = True
    meta[META_BACKBONES] = {}
    for name, backbone in backbones.items():
        fingerprint = frozen_fingerprint(backbone)
        state[_key(name, FINGERPRINT_KEY)] = fingerprint
        meta[META_BACKBONES][name] = dict(fingerprint=fingerprint_digest(fingerprint),
                                          pretrained=_pretrained_file(backbone))


def load_tuned_only(backbone: nn.Module, state_dict: dict, prefix: str) -> None:
    """Complete a tuned-only state dict with the frozen weights of the pre-trained backbone.

    Called by ``backbone``'s ``load_state_dict`` pre-hook with the state dict being loaded and
    the backbone's key prefix. A state dict that holds the frozen weights (a full checkpoint), or
    none of this backbone's keys, is left alone. Otherwise the pre-trained weights of ``init_cfg``
    are loaded first unless they already were (``tools/test.py`` never calls ``init_weights``),
    the recorded fingerprint is compared with theirs, and the frozen weights are added to the
    state dict so that nothing is reported missing.

    Raises:
        KeyError: the backbone has no ``init_cfg=dict(type='Pretrained', ...)`` to take the
            frozen weights from, or the state dict has no fingerprint of the frozen backbone it
            was trained on (it was not saved by :func:`strip_to_tuned_only`).
        ValueError: the checkpoint was trained on another frozen backbone (naming the
            pre-trained file of ``init_cfg`` and both fingerprints).
    """
    recorded = state_dict.pop(prefix + FINGERPRINT_KEY, None)
    if prefix + 'patch_embed.projection.weight' in state_dict:
        return  # a full checkpoint holds the frozen weights itself
    if not any(k.startswith(prefix + 'prompts.') for k in state_dict):
        return  # not a state dict of this backbone at all
    pretrained = _pretrained_file(backbone)
    if not backbone.pretrained_loaded:
        if pretrained is None:
            raise KeyError('this checkpoint holds only the tuned tensors of a DAVPTViT; the '
                           'frozen backbone must come from init_cfg=dict(type=\'Pretrained\', '
                           'checkpoint=...), which this model does not have')
        backbone.load_pretrained(backbone.init_cfg['checkpoint'])
    if recorded is None:
        raise KeyError(
            f'this checkpoint holds only the tuned tensors of a DAVPTViT but not '
            f'{prefix}{FINGERPRINT_KEY}, the fingerprint of the frozen backbone it was trained '
            f'on, so nothing shows that {pretrained} is that backbone. Save tuned-only '
            'checkpoints with TunedOnlyCheckpointHook (or strip_to_tuned_only), or save the full '
            'state dict')
    current = frozen_fingerprint(backbone)
    if recorded.shape != current.shape or not torch.allclose(
            recorded.double(), current, rtol=FINGERPRINT_RTOL, atol=FINGERPRINT_ATOL):
        raise ValueError(
            f'this tuned-only checkpoint was trained on a frozen backbone with fingerprint '
            f'{fingerprint_digest(recorded)}, but the backbone loaded from {pretrained} '
            f'(model.backbone.init_cfg.checkpoint) has fingerprint '
            f'{fingerprint_digest(current)}: its prompts and head would run on other weights. '
            'Set init_cfg.checkpoint to the pre-trained file it was trained with (the '
            f"checkpoint's meta['{META_BACKBONES}'] names it)")
    for key, value in backbone.state_dict().items():  # no "missing keys" for the frozen part
        state_dict.setdefault(prefix + key, value)
