"""The attention of the CLS token and the prompts of a DA-VPT (or VPT) model, recomputed from
the layers' inputs, and the share of the CLS token's attention that goes to its positive prompt:
what ``tools/analysis/visualize_attention.py`` draws and prints, and what
:mod:`mmdavpt_lab.compare` reports per run (:func:`split_shares`).

The model computes attention with fused SDPA and never builds an attention map; this module
recomputes the maps of the chosen layers only, from the input of each layer's attention (a
forward hook on ``layer.ln1``) and the layer's query/key projection (tuned biases included).
Rows are averaged over the heads.
"""
import json
import os
import os.path as osp
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: The files :func:`write_shares` writes in its output directory.
SHARES_JSON = 'attention_shares.json'
SHARES_PNG = 'attention_shares.png'


def num_prefix_tokens(backbone: nn.Module, layer: int) -> int:
    """CLS + prompts in front of the patch tokens in the input of ``layer`` (VPT-Shallow carries
    the prompts of the first layer through all layers)."""
    return 1 + backbone.prompt_counts[layer if backbone.prompt_mode == 'deep' else 0]


def attention_rows(backbone: nn.Module, layer: int, tokens: Tensor, num_queries: int) -> Tensor:
    """Softmax attention of the first ``num_queries`` tokens of one layer, per head.

    Args:
        backbone: a :class:`DAVPTViT`.
        layer: the layer index.
        tokens: B x L x D, the output of the layer's ``ln1`` (what its attention projects).
        num_queries: rows to compute (1 + prompts: the CLS token and the prompts).

    Returns:
        B x heads x num_queries x L: softmax(q k^T / sqrt(head_dims)) with the layer's
        ``qkv`` weight and bias (tuned bias offsets included), the scale SDPA uses.
    """
    attn = backbone.layers[layer].attn
    B, L, _ = tokens.shape
    heads, head_dims = attn.num_heads, attn.head_dims
    qkv = F.linear(tokens, attn.qkv.weight, backbone._qkv_bias(attn))
    q, k, _ = qkv.reshape(B, L, 3, heads, head_dims).permute(2, 0, 3, 1, 4)
    scores = q[:, :, :num_queries] @ k.transpose(-2, -1) * head_dims**-0.5
    return scores.float().softmax(dim=-1)


class AttentionRecorder:
    """Record the CLS and prompt attention rows of chosen layers during forward passes.

    Use ``with recorder.recording(): model(...)``; afterwards ``recorder.maps[layer]`` is
    B x P x L (P = 1 + prompts of that layer; heads averaged) for the last pass, with the
    token layout ``[CLS, prompts, patches]``, and ``recorder.patch_hw`` the patch grid.
    """

    def __init__(self, backbone: nn.Module, layers: Sequence[int]) -> None:
        self.backbone = backbone
        self.layers = backbone._check_layer_indices(layers, 'layers')  # sorted, non-negative
        self.maps: Dict[int, Tensor] = {}
        self.patch_hw: Tuple[int, int] = (0, 0)

    def num_prefix(self, layer: int) -> int:
        return num_prefix_tokens(self.backbone, layer)

    @contextmanager
    def recording(self) -> Iterator['AttentionRecorder']:
        self.maps = {}

        def on_patch_embed(module, args, output):
            self.patch_hw = tuple(output[1])

        def on_ln1(layer):
            def hook(module, args, output):
                prefix = self.num_prefix(layer)
                rows = attention_rows(self.backbone, layer, output.detach(), prefix)
                self.maps[layer] = rows.mean(dim=1)
            return hook

        handles = [self.backbone.patch_embed.register_forward_hook(on_patch_embed)]
        handles += [self.backbone.layers[i].ln1.register_forward_hook(on_ln1(i))
                    for i in self.layers]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()


def cls_shares(rows: Tensor, positive: Optional[Tensor]) -> Dict[str, Tensor]:
    """Split the CLS token's attention (row 0 of ``rows``) by where it goes.

    Args:
        rows: B x P x L attention rows of one layer (from :class:`AttentionRecorder`).
        positive: B x (P - 1) bool, the positive prompts of each image, or ``None`` (no mapping
            at this layer).

    Returns:
        per image (B,): ``cls`` (to itself), ``positive``, ``others`` (the other prompts),
        ``patches``, which sum to 1; ``top_prompt`` (the most attended prompt's share);
        ``positive_is_top`` (1. where a positive prompt is the most attended one); the positive
        entries are NaN without ``positive`` or where an image has no positive prompt.
    """
    P = rows.shape[1]
    cls = rows[:, 0]
    prompts = cls[:, 1:P]
    out = dict(cls=cls[:, 0], patches=cls[:, P:].sum(-1), top_prompt=prompts.max(-1).values
               if P > 1 else cls.new_zeros(len(cls)))
    nan = torch.full_like(out['cls'], float('nan'))
    if positive is None or P == 1:
        out.update(positive=nan, others=prompts.sum(-1), positive_is_top=nan)
        return out
    pos = (prompts * positive).sum(-1)
    has = positive.any(-1)
    top_is_pos = positive.gather(1, prompts.argmax(-1, keepdim=True))[:, 0].float()
    out.update(positive=torch.where(has, pos, nan), others=prompts.sum(-1) - pos,
               positive_is_top=torch.where(has, top_is_pos, nan))
    return out


@dataclass
class ShareMeter:
    """Running means of :func:`cls_shares` per layer (NaN entries skipped)."""
    sums: Dict[int, Dict[str, float]] = field(default_factory=dict)
    counts: Dict[int, Dict[str, int]] = field(default_factory=dict)
    num_prompts: Dict[int, int] = field(default_factory=dict)

    def update(self, layer: int, shares: Dict[str, Tensor], num_prompts: int) -> None:
        self.num_prompts[layer] = num_prompts
        sums = self.sums.setdefault(layer, {})
        counts = self.counts.setdefault(layer, {})
        for k, v in shares.items():
            valid = ~torch.isnan(v)
            sums[k] = sums.get(k, 0.) + float(v[valid].sum())
            counts[k] = counts.get(k, 0) + int(valid.sum())

    def means(self) -> Dict[int, Dict[str, Optional[float]]]:
        out = {}
        for layer, sums in self.sums.items():
            counts = self.counts[layer]
            out[layer] = {k: (sums[k] / counts[k] if counts[k] else None) for k in sums}
            out[layer]['num_prompts'] = self.num_prompts[layer]
            out[layer]['images'] = counts['cls']
        return out


def format_shares(name: str, means: Dict[int, Dict[str, Optional[float]]],
                  guided: Sequence[int]) -> str:
    """The per-layer table printed for one model."""
    def pct(v):
        return '     -' if v is None else f'{100 * v:5.1f}%'

    lines = [f'{name}: share of the CLS token\'s attention (mean over '
             f'{next(iter(means.values()))["images"]} images)',
             ' layer | prompts | CLS->self | ->positive | ->other prompts (per prompt) | '
             '->patches | top prompt | positive is top']
    for layer in sorted(means):
        m = means[layer]
        n = m['num_prompts']
        n_other = n - 1 if m['positive'] is not None else n
        per = None if m['others'] is None or n_other <= 0 else m['others'] / n_other
        tag = ' (guided)' if layer in guided else ''
        lines.append(f' {layer:5d} | {n:7d} | {pct(m["cls"]):>9} | {pct(m["positive"]):>10} | '
                     f'{pct(m["others"]):>15} ({pct(per)}) | {pct(m["patches"]):>9} | '
                     f'{pct(m["top_prompt"]):>10} | {pct(m["positive_is_top"]):>6}{tag}')
    return '\n'.join(lines)


@dataclass
class LoadedModel:
    """A model to show, with what the tool needs of its checkpoint."""
    name: str
    model: nn.Module
    class_to_prompt: Optional[Tensor]  # C, or None without a mapping
    classes: Optional[List[str]]  # from the checkpoint's dataset_meta
    recorder: Optional[AttentionRecorder] = None

    @property
    def guided_layers(self) -> List[int]:
        return list(self.model.backbone.guided_layers) if self.class_to_prompt is not None \
            else []

    def positive_mask(self, layer: int, labels: Sequence[Sequence[int]]) -> Optional[Tensor]:
        """B x prompts bool: the prompts of each image's classes at a guided ``layer``."""
        if layer not in self.guided_layers:
            return None
        num_prompts = self.model.backbone.prompt_counts[layer]
        mask = torch.zeros(len(labels), num_prompts, dtype=torch.bool)
        for b, classes in enumerate(labels):
            for c in classes:
                mask[b, int(self.class_to_prompt[c])] = True
        return mask


def setup_scope(cfg) -> None:
    """Import the config's ``custom_imports`` and make its ``default_scope`` the current one
    (the pipelines and dataloaders are built in it)."""
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))


def load_model(cfg, checkpoint: str, device: str, name: Optional[str] = None) -> LoadedModel:
    """Build the config's model (in its default scope) and load the checkpoint (full or
    tuned-only)."""
    from mmengine.runner import load_checkpoint

    from mmdavpt.models import DAVPTViT
    from mmdavpt.registry import build_model
    model = build_model(cfg.model, cfg.get('default_scope', 'mmpretrain'))
    if not isinstance(getattr(model, 'backbone', None), DAVPTViT):
        raise TypeError(f'{checkpoint}: the model needs a DAVPTViT backbone, got '
                        f'{type(getattr(model, "backbone", None)).__name__}')
    ckpt = load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.to(device).eval()
    guidance = getattr(model, 'guidance', None)
    c2p = None
    if guidance is not None:
        c2p = guidance.mapping.class_to_prompt.cpu()
        if not guidance.mapping.initialized:
            warnings.warn(f'{checkpoint}: the semantic mapping was never computed (placeholder '
                          'class % prompts); the positive prompts are meaningless',
                          stacklevel=2)
    backbone = model.backbone
    kind = 'DA-VPT' if c2p is not None else ('VPT' if any(backbone.prompt_counts) else
                                             'no prompts')
    classes = (ckpt.get('meta', {}).get('dataset_meta') or {}).get('classes')
    return LoadedModel(name or f'{kind}: {osp.basename(checkpoint)}', model, c2p,
                       list(classes) if classes else None)


def run_models(models: Sequence[LoadedModel], data: dict, device: str) -> List[dict]:
    """Forward ``data`` (a collated batch) through every model with its recorder on.

    Returns per model: ``maps`` ({layer: B x P x L}, on the CPU), ``hw`` (the patch grid) and
    ``pred`` (the predicted classes of a classifier, else ``None``).
    """
    from mmpretrain.models import ImageClassifier
    results = []
    for m in models:
        batch = m.model.data_preprocessor(data, False)
        inputs = batch['inputs'].to(device)
        with torch.no_grad(), m.recorder.recording():
            if isinstance(m.model, ImageClassifier):
                preds = m.model.predict(inputs, batch['data_samples'])
                pred = [int(p.pred_label) for p in preds]
            else:
                m.model.extract_feat(inputs)
                pred = None
        results.append(dict(maps={k: v.cpu() for k, v in m.recorder.maps.items()},
                            hw=m.recorder.patch_hw, pred=pred))
    return results


def gt_classes(data_samples) -> List[List[int]]:
    """The classes of each sample: its label (classification) or the classes of its mask."""
    out = []
    for ds in data_samples:
        if 'gt_label' in ds:
            out.append([int(c) for c in ds.gt_label.flatten()])
        elif 'gt_sem_seg' in ds:
            present = ds.gt_sem_seg.data.unique()
            out.append([int(c) for c in present if c != 255])
        else:
            out.append([])
    return out


def plot_shares(path: str, all_means: Dict[str, Dict[int, dict]]) -> None:
    """Stacked bars per model (groups) and layer: CLS -> self / positive / other prompts /
    patches."""
    import textwrap

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    parts = [('cls', 'CLS itself', 'tab:blue'), ('positive', 'positive prompt', 'tab:red'),
             ('others', 'other prompts', 'tab:gray'), ('patches', 'patches', 'tab:olive')]
    xs, ticks, bars, groups = [], [], [], []
    x = 0.
    for name, means in all_means.items():
        start = x
        for layer in sorted(means):
            xs.append(x)
            ticks.append(f'layer {layer}')
            bars.append([means[layer][k] or 0. for k, _, _ in parts])
            x += 1
        groups.append(((start + x - 1) / 2, name, x - start))
        x += 0.6
    fig, ax = plt.subplots(figsize=(max(5., 1.3 * x + 2.5), 4.6))
    bottom = [0.] * len(xs)
    for i, (_, text, color) in enumerate(parts):
        values = [b[i] for b in bars]
        ax.bar(xs, values, bottom=bottom, color=color, label=text, width=0.8)
        for xi, v, b in zip(xs, values, bottom):
            if v >= 0.04:
                ax.text(xi, b + v / 2, f'{v:.0%}', ha='center', va='center', fontsize=8,
                        color='white')
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(xs, ticks, fontsize=8)
    for center, name, width in groups:
        ax.text(center, -0.1, textwrap.fill(name, max(16, int(22 * width))), ha='center',
                va='top', fontsize=9, fontweight='bold', transform=ax.get_xaxis_transform())
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of the CLS token's attention")
    ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1, 1))
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)


def split_shares(cfg, models: Sequence[LoadedModel], layers: Sequence[int], split: str,
                 device: str, max_samples: Optional[int] = None) -> Dict[str, Dict[int, dict]]:
    """Mean shares of the CLS token's attention (:func:`cls_shares`) over a split of the
    config's dataloader, per model and layer.

    Args:
        cfg: the config whose ``{split}_dataloader`` is read (built in the current scope:
            :func:`setup_scope`).
        models: the models, each with its :class:`AttentionRecorder` on ``layers``.
        layers: non-negative layer indices (those of the recorders).
        split: ``'val'``, ``'test'`` or ``'train'``.
        device: where the models are.
        max_samples: a cap on the samples.

    Returns:
        {model name: {layer: :meth:`ShareMeter.means`}}.
    """
    from mmengine.runner import Runner
    loader_cfg = cfg.get(f'{split}_dataloader')
    if not loader_cfg:
        raise ValueError(f'the config has no {split}_dataloader')
    loader = Runner.build_dataloader(loader_cfg, seed=None)
    meters = [ShareMeter() for _ in models]
    seen = 0
    for data in loader:
        if max_samples is not None and seen >= max_samples:
            break
        if max_samples is not None:
            keep = max_samples - seen
            data = {k: v[:keep] for k, v in data.items()}
        results = run_models(models, data, device)
        gt = gt_classes(data['data_samples'])
        seen += len(gt)
        for m, res, meter in zip(models, results, meters):
            for layer in layers:
                rows = res['maps'][layer]
                meter.update(layer, cls_shares(rows, m.positive_mask(layer, gt)),
                             rows.shape[1] - 1)
    return {m.name: meter.means() for m, meter in zip(models, meters)}


def write_shares(out_dir: str, all_means: Dict[str, Dict[int, dict]]) -> Tuple[str, str]:
    """Write :func:`split_shares`' result to ``out_dir``: :data:`SHARES_JSON` (layers as string
    keys) and the plot :data:`SHARES_PNG` (:func:`plot_shares`); returns the two paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = osp.join(out_dir, SHARES_JSON), osp.join(out_dir, SHARES_PNG)
    with open(paths[0], 'w') as f:
        json.dump({name: {str(k): v for k, v in means.items()}
                   for name, means in all_means.items()}, f, indent=1)
    plot_shares(paths[1], all_means)
    return paths

