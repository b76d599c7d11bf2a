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

The maps are recomputed from the layers' inputs (:mod:`mmdavpt_lab.attention`; the model
itself keeps fused attention and never builds a map). A second checkpoint is built from
``--config2``, else from the config saved in the checkpoint, else from CONFIG. A positional
argument ending in ``.pth``, ``.pt`` or ``.ckpt`` after CHECKPOINT is the second checkpoint.
"""
import argparse
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from mmdavpt_lab.attention import (
    AttentionRecorder,
    LoadedModel,
    format_shares,
    load_model,
    run_models,
    setup_scope,
    split_shares,
    write_shares,
)

CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.ckpt')
#: Transforms that need a label and are dropped for a bare IMAGE (besides ``Load*Annotations``).
LABEL_TRANSFORMS = ('CheckSegMask', )


# ---- models and data -------------------------------------------------------------------------


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


def display_images(data: dict) -> List[Tensor]:
    """H x W x 3 uint8 RGB of the raw pipeline outputs (mmcv loads BGR)."""
    out = []
    for img in data['inputs']:
        img = img if img.ndim == 3 else img[None]
        img = img[:3].flip(0) if img.shape[0] == 3 else img[:1].expand(3, -1, -1)
        out.append(img.permute(1, 2, 0).to(torch.uint8).cpu())
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

    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    setup_scope(cfg)  # the pipeline and the dataloader are built in the config's scope
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
        all_means = split_shares(cfg, models, layers, args.split, args.device, args.max_samples)
        for m in models:
            print(format_shares(m.name, all_means[m.name], m.guided_layers))
            print()
        json_path, png_path = write_shares(args.out, all_means)
        images = next(iter(next(iter(all_means.values())).values()))['images']
        print(f'written: {json_path}, {png_path} ({args.split}, {images} samples)')
    return all_means


if __name__ == '__main__':
    main()
