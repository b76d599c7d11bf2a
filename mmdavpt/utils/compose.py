"""Helpers for configs that add DA-VPT to an upstream MMSeg or MMPretrain config.

They are plain functions of config dicts, called from a config file after its ``_base_`` line
(MMEngine runs a config as Python, reads base variables as ``_base_.NAME`` and drops imported
functions from the result)::

    _base_ = ['mmseg::setr/setr_vit-l_pup_8xb2-160k_ade20k-512x512.py']
    from mmdavpt.utils.compose import mmseg_vit_to_davpt, strict_pipeline  # noqa: E402

    model = dict(type='DAVPTEncoderDecoder', pretrained=None,
                 backbone=mmseg_vit_to_davpt(_base_.model.backbone, num_prompts=20))
    train_dataloader = dict(dataset=dict(
        pipeline=strict_pipeline(_base_.train_pipeline, num_classes=150)))

The ``_base_ = ...`` line must come before the import: MMEngine treats a config whose first
statement is an import as a "lazy" (new-style) config. See ``docs/composing.md``.
"""
import copy
import inspect
from collections.abc import Mapping, Sequence
from typing import Optional

#: MMSeg ``VisionTransformer`` arguments with no counterpart in ``DAVPTViT``, and the only value
#: each may have (anything else would change the network, so it is refused).
_MMSEG_ONLY = {'output_cls_token': False, 'patch_norm': False, 'num_fcs': 2,
               'act_cfg': {'type': 'GELU'}}
#: MMSeg ``VisionTransformer`` arguments taken over unchanged by ``DAVPTViT`` (MMPretrain's).
_SAME_NAME = ('img_size', 'patch_size', 'in_channels', 'out_indices', 'qkv_bias', 'drop_rate',
              'drop_path_rate', 'with_cls_token', 'norm_cfg', 'final_norm', 'interpolate_mode',
              'pre_norm', 'with_cp')


def _plain(value):
    """A ConfigDict / tuple tree as plain dicts and lists (for comparisons and copies)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def mmseg_vit_to_davpt(backbone: Mapping, pretrained: Optional[str] = None, **davpt) -> dict:
    """The ``DAVPTViT`` config that computes what an MMSeg ``VisionTransformer`` config does.

    MMSeg's ViT and ``DAVPTViT`` (MMPretrain's ViT) name their arguments differently, so the
    backbone has to be replaced (``_delete_=True``), which would drop the upstream settings the
    heads rely on. This carries them over, filling in MMSeg's defaults for what ``backbone``
    does not set: the architecture (``embed_dims``, ``num_layers``, ``num_heads``,
    ``mlp_ratio``), ``img_size``, ``patch_size``, ``out_indices``, ``final_norm`` (MMSeg: False,
    MMPretrain: True), ``interpolate_mode``, the dropout rates, ``norm_cfg`` and the pre-trained
    weights (``init_cfg``, else the deprecated ``pretrained`` of the backbone or of the model).
    The output is feature maps (``out_type='featmap'``), as MMSeg's necks and heads expect.

    Args:
        backbone: the upstream backbone config, e.g. ``_base_.model.backbone``.
        pretrained: the model-level ``pretrained`` of the upstream segmentor (set the model's
            own ``pretrained=None`` then: ``DAVPTViT`` takes the weights through ``init_cfg``).
        **davpt: ``DAVPTViT`` arguments that override or add to the result (``num_prompts``,
            ``guided_layers``, ``num_guided_prompts``, ``bias_tuning``, ...).

    Returns:
        a backbone config with ``_delete_=True`` and ``type='DAVPTViT'``.

    Raises:
        ValueError: ``backbone`` is not an MMSeg ``VisionTransformer``, or it uses an option
            that ``DAVPTViT`` cannot reproduce (``output_cls_token``, ``patch_norm``, another
            activation or number of FFN layers).
    """
    from mmseg.models.backbones import VisionTransformer

    if backbone.get('type') not in ('VisionTransformer', 'mmseg.VisionTransformer'):
        raise ValueError(f"mmseg_vit_to_davpt converts MMSeg's VisionTransformer, got a backbone "
                         f"of type {backbone.get('type')!r}")
    params = inspect.signature(VisionTransformer.__init__).parameters
    settings = {k: p.default for k, p in params.items() if p.default is not p.empty}
    given = _plain(backbone)
    unknown = sorted(set(given) - set(params) - {'type'})
    if unknown:
        raise ValueError(f'backbone arguments unknown to MMSeg VisionTransformer: {unknown}')
    settings.update(given)
    for key, allowed in _MMSEG_ONLY.items():
        if key in given and given[key] != allowed:
            raise ValueError(f'DAVPTViT cannot reproduce the MMSeg VisionTransformer option '
                             f'{key}={given[key]!r} (it supports {allowed!r} only)')
    init_cfg = settings.get('init_cfg')
    weights = settings.get('pretrained') or pretrained
    if init_cfg is None and weights:
        init_cfg = dict(type='Pretrained', checkpoint=weights)
    embed_dims = settings['embed_dims']
    out = dict(
        _delete_=True,
        type='DAVPTViT',
        arch=dict(embed_dims=embed_dims, num_layers=settings['num_layers'],
                  num_heads=settings['num_heads'],
                  feedforward_channels=int(settings['mlp_ratio'] * embed_dims)),
        out_type='featmap',
        init_cfg=copy.deepcopy(init_cfg),
        **{k: copy.deepcopy(settings[k]) for k in _SAME_NAME})
    if settings.get('attn_drop_rate'):
        out['layer_cfgs'] = dict(attn_drop_rate=settings['attn_drop_rate'])
    out.update(davpt)
    return out


def strict_pipeline(pipeline: Sequence[Mapping], num_classes: Optional[int] = None,
                    ignore_index: int = 255, strict_loading: bool = True) -> list:
    """A copy of a data pipeline that stops on broken data, naming the file.

    - With ``strict_loading``, ``LoadImageFromFile`` becomes ``LoadImageFromFileStrict`` (same
      arguments): an empty or undecodable image raises with its path instead of a bare
      ``cv2.error``, and is never skipped. Pass ``strict_loading=False`` for test, val and TTA
      pipelines: MMPretrain's and MMSeg's inferencers look for ``LoadImageFromFile`` in the test
      pipeline by name (and an unreadable test image stops a test run anyway).
    - With ``num_classes`` (segmentation), a ``CheckSegMask(num_classes, ignore_index)`` step
      follows every ``LoadAnnotations``: a mask whose size differs from its image, or with labels
      outside ``[0, num_classes)`` other than ``ignore_index``, raises with its path. Inside a
      ``TestTimeAug`` it becomes a step of its own after the annotations' step.

    Works on ``TestTimeAug`` pipelines too (``tta_pipeline``). The input is not modified.
    """
    check = None if num_classes is None else dict(
        type='CheckSegMask', num_classes=num_classes, ignore_index=ignore_index)
    out = []
    for step in _plain(list(pipeline)):
        kind = step.get('type')
        if kind == 'LoadImageFromFile' and strict_loading:
            step['type'] = 'LoadImageFromFileStrict'
        if kind == 'TestTimeAug':
            step['transforms'] = _strict_tta_steps(step['transforms'], check, strict_loading)
        out.append(step)
        if kind == 'LoadAnnotations' and check is not None:
            out.append(dict(check))
    return out


def _strict_tta_steps(steps: list, check: Optional[dict], strict_loading: bool) -> list:
    """``TestTimeAug.transforms`` (a list of alternatives per step) with the strict loader (if
    ``strict_loading``) and a ``[check]`` step after each step that loads annotations."""
    out = []
    for alternatives in steps:
        if strict_loading:
            alternatives = [dict(t, type='LoadImageFromFileStrict')
                            if t.get('type') == 'LoadImageFromFile' else t for t in alternatives]
        out.append(alternatives)
        if check is not None and any(t.get('type') == 'LoadAnnotations' for t in alternatives):
            out.append([dict(check)])
    return out
