"""Attention maps of the CLS token and the prompts of a DA-VPT (or VPT) model (paper Figure 3),
and the share of the CLS token's attention that goes to its positive prompt.

    python tools/analysis/visualize_attention.py CONFIG CHECKPOINT [CHECKPOINT2] [IMAGE ...] \\
        --layers 3 11 --out DIR [--split val] [--labels cat dog ...] [--config2 CONFIG2]

For every IMAGE, ``DIR/<image name>.png`` shows per chosen layer (rows) and per model (column
blocks, side by side when a second checkpoint is given): the CLS token's attention to the patches,
its attention to each prompt (bars; the positive prompt in red), and the patch attention of the
prompts the CLS token attends to most. The positive prompt is the one the checkpoint's semantic
mapping assigns to the image's class (``--labels``, else the model's prediction) at a guided
layer; it is framed in red.

With ``--split val`` (or ``test``, ``train``) it runs over that split of the config's dataloader
and prints per layer how the CLS token's attention divides between itself, its positive
prompt(s), the other prompts and the patches (the four shares sum to 1), and how often the
positive prompt is the prompt the CLS token attends to most: the paper's claim that guided
prompts become a bridge between the patches and the CLS token, as numbers. They are also written
to ``DIR/attention_shares.json`` and plotted in ``DIR/attention_shares.png``.

The model computes attention with fused SDPA and never builds an attention map; this tool
recomputes the maps of the chosen layers only, from the input of each layer's attention (a
forward hook on ``layer.ln1``) and the layer's query/key projection (tuned biases included).
Rows are averaged over the heads. A second checkpoint is built from ``--config2``, else from the
config saved in the checkpoint, else from CONFIG. A positional argument ending in ``.pth``,
``.pt`` or ``.ckpt`` after CHECKPOINT is the second checkpoint.
"""
import argparse
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

CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.ckpt')
#: Transforms that need a label and are dropped for a bare IMAGE (besides ``Load*Annotations``).
LABEL_TRANSFORMS = ('CheckSegMask', )


# ---- attention maps --------------------------------------------------------------------------
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


# ---- shares of the CLS token's attention -----------------------------------------------------
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


# ---- models and data -------------------------------------------------------------------------
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


def _setup_scope(cfg) -> None:
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


def dataset_classes(cfg) -> Optional[List[str]]:
    """Class names of the config's val (else test, train) dataset, built without its samples."""
    from mmengine.registry import DATASETS
    for loader in ('val_dataloader', 'test_dataloader', 'train_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        if dataset:
            try:
                return list(DATASETS.build(dict(dataset, lazy_init=True)).metainfo['classes'])
            except Exception as e:  # data not there: class indices instead
                warnings.warn(f'no class names from the {loader} dataset ({e})', stacklevel=2)
                return None
    return None


def second_config(cfg, checkpoint: str, config2: Optional[str]):
    """The config of the second checkpoint: --config2, the one saved in it, or CONFIG."""
    from mmengine.config import Config
    if config2:
        return Config.fromfile(config2)
    meta = torch.load(checkpoint, map_location='cpu', mmap=True).get('meta', {})
    if meta.get('cfg'):
        return Config.fromstring(meta['cfg'], '.py')
    return cfg


def image_pipeline(cfg):
    """The test (else val) pipeline of the config, without what needs annotations."""
    from mmengine.dataset import Compose
    for loader in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        if dataset.get('pipeline'):
            steps = [t for t in dataset['pipeline']
                     if 'Annotation' not in t['type'] and t['type'] not in LABEL_TRANSFORMS]
            return Compose(steps)
    raise ValueError('the config has no test or val pipeline to load the images with')


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


def display_images(data: dict) -> List[Tensor]:
    """H x W x 3 uint8 RGB of the raw pipeline outputs (mmcv loads BGR)."""
    out = []
    for img in data['inputs']:
        img = img if img.ndim == 3 else img[None]
        img = img[:3].flip(0) if img.shape[0] == 3 else img[:1].expand(3, -1, -1)
        out.append(img.permute(1, 2, 0).to(torch.uint8).cpu())
    return out


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


# ---- the figure --------------------------------------------------------------------------------
def plot_image(path: str, image: Tensor, title: str, models: Sequence[LoadedModel],
               results: Sequence[dict], index: int, labels: Sequence[List[int]],
               layers: Sequence[int], max_prompts: int) -> None:
    """One PNG: rows = layers; per model a panel [CLS map, CLS->prompts bars, prompt maps].

    The maps are the patch part of an attention row over the (grey) input, colour scaled from
    their own minimum to maximum; the titles give the absolute shares.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    block = 2 + max_prompts
    fig = plt.figure(figsize=(1.2 + 1.9 * block * len(models), 2.2 * len(layers) + 0.9),
                     layout='constrained')
    subfigs = fig.subfigures(1, 1 + len(models), width_ratios=[1.0] + [block] * len(models),
                             wspace=0.02)
    H, W = image.shape[:2]
    grey = image.float().mean(-1)
    left = subfigs[0].subplots(len(layers), 1, squeeze=False)[:, 0]
    subfigs[0].suptitle('input', fontsize=10)
    for ax, layer in zip(left, layers):
        ax.imshow(image)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f'layer {layer}', fontsize=11)

    def show_map(ax, row, P, hw, text, color='black'):
        grid = row[P:].reshape(hw)
        ax.imshow(grey, cmap='gray')
        ax.imshow(grid, cmap='inferno', alpha=0.65, extent=(-0.5, W - 0.5, H - 0.5, -0.5),
                  interpolation='nearest')
        ax.set_title(text, fontsize=8, color=color)
        ax.set_xticks([])
        ax.set_yticks([])

    for j, (m, res) in enumerate(zip(models, results)):
        sub = subfigs[1 + j]
        sub.set_facecolor('0.96')
        sub.suptitle(m.name, fontsize=11, fontweight='bold')
        axes = sub.subplots(len(layers), block, squeeze=False)
        for r, layer in enumerate(layers):
            rows = res['maps'][layer][index]  # P x L
            P = rows.shape[0]
            pos = m.positive_mask(layer, [labels[j]])
            pos = pos[0] if pos is not None else torch.zeros(P - 1, dtype=torch.bool)
            cls_to_prompts = rows[0, 1:P]
            show_map(axes[r, 0], rows[0], P, res['hw'],
                     f'CLS ({rows[0, P:].sum():.0%} to patches)')
            ax = axes[r, 1]
            if P > 1:
                colors = ['tab:red' if p else 'tab:gray' for p in pos.tolist()]
                ax.bar(range(P - 1), cls_to_prompts.numpy(), color=colors)
                ax.set_xticks(range(P - 1))
                ax.tick_params(labelsize=6)
                ax.set_title('CLS -> prompts' + (' (red: positive)' if pos.any() else ''),
                             fontsize=8)
            else:
                ax.axis('off')
            order = cls_to_prompts.argsort(descending=True).tolist()
            shown = [p for p in order if pos[p]][:max_prompts]
            shown += [p for p in order if p not in shown][:max_prompts - len(shown)]
            shown.sort(key=order.index)
            for k in range(max_prompts):
                ax = axes[r, 2 + k]
                if k >= len(shown):
                    ax.axis('off')
                    continue
                p = shown[k]
                star = ' * positive' if pos[p] else ''
                show_map(ax, rows[1 + p], P, res['hw'],
                         f'prompt {p}{star}\nCLS->p {cls_to_prompts[p]:.1%}',
                         'tab:red' if pos[p] else 'black')
                if pos[p]:
                    for spine in ax.spines.values():
                        spine.set_edgecolor('tab:red')
                        spine.set_linewidth(3)
    fig.suptitle(title, fontsize=12)
    fig.savefig(path, dpi=90)
    plt.close(fig)


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


# ---- main ------------------------------------------------------------------------------------
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='CLS and prompt attention maps of DA-VPT / VPT checkpoints, and the share '
        "of the CLS token's attention that goes to its positive prompt")
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('inputs', nargs='*', metavar='[CHECKPOINT2] IMAGE',
                        help='an optional second checkpoint (.pth/.pt/.ckpt), then images')
    parser.add_argument('--layers', type=int, nargs='+',
                        help='layer indices (negative from the end); default: a quarter of the '
                        'depth and the last layer (3 and 11 for ViT-B)')
    parser.add_argument('--out', required=True, help='output directory for the PNGs')
    parser.add_argument('--split', choices=['val', 'test', 'train'],
                        help="average the CLS shares over this split of the config's dataloader")
    parser.add_argument('--max-samples', type=int, help='cap on the split samples')
    parser.add_argument('--labels', nargs='+',
                        help='class (index or name) of each IMAGE; default: the prediction')
    parser.add_argument('--config2', help='config of the second checkpoint')
    parser.add_argument('--names', nargs='+', help='titles of the models')
    parser.add_argument('--max-prompts', type=int, default=5,
                        help='prompt maps shown per layer and model (most attended by CLS, the '
                        'positive prompt always included)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    args.checkpoint2 = None
    if args.inputs and args.inputs[0].endswith(CHECKPOINT_SUFFIXES):
        args.checkpoint2, args.inputs = args.inputs[0], args.inputs[1:]
    if not args.inputs and not args.split:
        parser.error('give IMAGE paths, --split, or both')
    if args.labels and len(args.labels) != len(args.inputs):
        parser.error(f'--labels has {len(args.labels)} entries for {len(args.inputs)} images')
    return args


def _class_index(label: str, classes: Optional[Sequence[str]]) -> int:
    if label.lstrip('-').isdigit():
        return int(label)
    if classes and label in classes:
        return list(classes).index(label)
    raise ValueError(f'unknown class {label!r}; classes: {list(classes or [])[:20]}')


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[int, dict]]:
    """Write the figures; return {model name: {layer: mean shares}} (empty without --split)."""
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.runner import Runner

    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    _setup_scope(cfg)  # the pipeline and the dataloader are built in the config's scope
    names = args.names or [None, None]
    models = [load_model(cfg, args.checkpoint, args.device, names[0])]
    if args.checkpoint2:
        cfg2 = second_config(cfg, args.checkpoint2, args.config2)
        models.append(load_model(cfg2, args.checkpoint2, args.device,
                                 names[1] if len(names) > 1 else None))
    if len(models) == 2 and models[0].name == models[1].name:
        models[1].name += ' (2)'
    n = models[0].model.backbone.num_layers
    layers = args.layers or [n // 4, n - 1]
    for m in models:
        m.recorder = AttentionRecorder(m.model.backbone, layers)
        layers = m.recorder.layers  # normalised against the first model's depth
    classes = next((m.classes for m in models if m.classes), None) or dataset_classes(cfg)
    os.makedirs(args.out, exist_ok=True)

    def class_name(c: int) -> str:
        return classes[c] if classes and c < len(classes) else str(c)

    if args.inputs:
        pipeline = image_pipeline(cfg)
        for i, path in enumerate(args.inputs):
            data = pseudo_collate([pipeline(dict(img_path=path))])
            results = run_models(models, data, args.device)
            if args.labels:
                given = _class_index(args.labels[i], classes)
                labels = [[given]] * len(models)
                title = f'{osp.basename(path)}, class {class_name(given)}'
            else:
                labels = [[r['pred'][0]] if r['pred'] else [] for r in results]
                title = f'{osp.basename(path)}, predicted ' + ' / '.join(
                    class_name(c[0]) for c in labels if c)
            out = osp.join(args.out, f'{osp.splitext(osp.basename(path))[0]}.png')
            plot_image(out, display_images(data)[0], title, models, results, 0, labels, layers,
                       args.max_prompts)
            print(f'written: {out}')

    all_means: Dict[str, Dict[int, dict]] = {}
    if args.split:
        loader_cfg = cfg.get(f'{args.split}_dataloader')
        if not loader_cfg:
            raise ValueError(f'the config has no {args.split}_dataloader')
        loader = Runner.build_dataloader(loader_cfg, seed=None)
        meters = [ShareMeter() for _ in models]
        seen = 0
        for data in loader:
            if args.max_samples is not None and seen >= args.max_samples:
                break
            if args.max_samples is not None:
                keep = args.max_samples - seen
                data = {k: v[:keep] for k, v in data.items()}
            results = run_models(models, data, args.device)
            gt = gt_classes(data['data_samples'])
            seen += len(gt)
            for m, res, meter in zip(models, results, meters):
                for layer in layers:
                    rows = res['maps'][layer]
                    meter.update(layer, cls_shares(rows, m.positive_mask(layer, gt)),
                                 rows.shape[1] - 1)
        for m, meter in zip(models, meters):
            all_means[m.name] = meter.means()
            print(format_shares(m.name, all_means[m.name], m.guided_layers))
            print()
        with open(osp.join(args.out, 'attention_shares.json'), 'w') as f:
            json.dump({name: {str(k): v for k, v in means.items()}
                       for name, means in all_means.items()}, f, indent=1)
        plot_shares(osp.join(args.out, 'attention_shares.png'), all_means)
        print(f'written: {args.out}/attention_shares.json, attention_shares.png ({args.split}, '
              f'{seen} samples)')
    return all_means


if __name__ == '__main__':
    main()
