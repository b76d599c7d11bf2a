"""Report the class -> prompt mapping of a DA-VPT training run: who shares which prompt, and how
the mapping changed from remap to remap.

    python tools/analysis/mapping_report.py WORK_DIR [--out DIR] [--config CONFIG]

From ``WORK_DIR`` (a ``tools/train.py`` work directory) it reads

- the remap history that :class:`~mmdavpt.engine.hooks.SemanticMappingHook` writes to
  ``WORK_DIR/<timestamp>/davpt_remaps.jsonl`` (every run in the directory, a resumed one
  included; read with :func:`mmdavpt.engine.hooks.mapping_hook.read_remap_history`),
- the ``guidance.mapping.class_to_prompt`` buffer of every checkpoint ``WORK_DIR/*.pth`` (full or
  tuned-only), which also covers runs whose logs are gone; where the remap log and a checkpoint
  describe the same step, they must agree,
- class names from the checkpoints' ``meta.dataset_meta`` or the dumped config's training dataset
  (``--config`` to name one), else class indices.

It prints a markdown report (final prompt -> classes; per remap: classes moved and which) and
writes ``mapping_report.md``, ``mapping_history.csv`` (class x remap) and ``mapping_report.png``
(the mapping over time, classes grouped by their final prompt) to ``--out`` (default
``WORK_DIR/mapping_report``).
"""
import argparse
import csv
import glob
import os
import os.path as osp
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from mmdavpt.engine.hooks.mapping_hook import REMAP_HISTORY_FILE, read_remap_history

MAPPING_KEY = 'guidance.mapping.class_to_prompt'


@dataclass
class MappingRecord:
    """The mapping in effect after one step of training.

    Attributes:
        unit: ``'initial'`` (before training), ``'epoch'`` or ``'iteration'``.
        step: epochs or iterations trained (0 for the initial mapping).
        class_to_prompt: prompt index of every class.
        sources: where it was read: ``'log'`` (the remap history), ``'checkpoint'`` or both.
    """
    unit: str
    step: int
    class_to_prompt: List[int]
    sources: Tuple[str, ...]

    @property
    def key(self) -> Tuple[int, int]:
        return (0 if self.unit == 'initial' else 1, self.step)

    @property
    def label(self) -> str:
        return 'initial' if self.unit == 'initial' else f'{self.unit} {self.step}'


# ---- reading ---------------------------------------------------------------------------------
def read_logs(work_dir: str) -> List[MappingRecord]:
    """Remap records of the remap history of every run in ``work_dir``, oldest run first."""
    return [MappingRecord('initial', 0, r.class_to_prompt, ('log', )) if r.initial else
            MappingRecord(r.unit, r.step, r.class_to_prompt, ('log', ))
            for r in read_remap_history(work_dir)]


def _load(path: str) -> dict:
    import mmdavpt  # noqa: F401  lets torch.load (weights_only) read mmengine checkpoints
    return torch.load(path, map_location='cpu', mmap=True)


def read_checkpoints(work_dir: str) -> Tuple[List[MappingRecord], Optional[List[str]]]:
    """Mapping records of the checkpoints in ``work_dir``, and the class names they carry."""
    records, classes = [], None
    for path in sorted(glob.glob(osp.join(work_dir, '*.pth'))):
        ckpt = _load(path)
        state = ckpt.get('state_dict', ckpt)
        mapping = next((v for k, v in state.items() if k.endswith(MAPPING_KEY)), None)
        if mapping is None:
            continue
        meta = ckpt.get('meta', {})
        name = osp.basename(path)
        by_iter = re.search(r'(?:^|_)iter_\d+', name) or (
            not re.search(r'(?:^|_)epoch_\d+', name) and not meta.get('epoch'))
        unit, step = ('iteration', int(meta.get('iter', 0))) if by_iter else \
            ('epoch', int(meta.get('epoch', 0)))
        records.append(MappingRecord(unit, step, mapping.tolist(), ('checkpoint', )))
        classes = classes or list(meta.get('dataset_meta', {}).get('classes') or []) or None
    return records, classes


def merge_records(logs: Sequence[MappingRecord],
                  checkpoints: Sequence[MappingRecord]) -> List[MappingRecord]:
    """One record per step, in training order; a later remap of a step replaces an earlier one
    (a resumed run repeats steps). A checkpoint that disagrees with the remap log is reported."""
    merged: Dict[Tuple[int, int], MappingRecord] = {}
    for r in logs:
        merged[r.key] = r
    for r in checkpoints:
        known = merged.get(r.key)
        if known is None:
            merged[r.key] = r
        elif known.class_to_prompt == r.class_to_prompt:
            if 'checkpoint' not in known.sources:
                known.sources += ('checkpoint', )
        else:
            warnings.warn(f'the checkpoint of {r.label} holds another mapping than the remap '
                          'log of that step; the remap log is used', stacklevel=2)
    return [merged[k] for k in sorted(merged)]


def classes_from_config(cfg) -> Optional[List[str]]:
    """Class names of the config's training dataset (built without reading its samples)."""
    from mmengine.registry import DATASETS, init_default_scope
    from mmengine.utils import import_modules_from_strings

    import mmdavpt  # noqa: F401
    try:
        if cfg.get('custom_imports'):
            import_modules_from_strings(**cfg.custom_imports)
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        dataset_cfg = dict(cfg.train_dataloader.dataset, lazy_init=True)
        return list(DATASETS.build(dataset_cfg).metainfo['classes'])
    except Exception as e:  # data moved or not mounted: fall back to indices
        warnings.warn(f'no class names from {cfg.filename} ({type(e).__name__}: {e}); '
                      'using indices', stacklevel=2)
        return None


# ---- reporting -------------------------------------------------------------------------------
def prompt_groups(class_to_prompt: Sequence[int], num_prompts: int) -> List[List[int]]:
    """The classes of each prompt."""
    groups: List[List[int]] = [[] for _ in range(num_prompts)]
    for c, p in enumerate(class_to_prompt):
        groups[p].append(c)
    return groups


def changes(before: Sequence[int], after: Sequence[int]) -> List[Tuple[int, int, int]]:
    """``(class, old prompt, new prompt)`` of every class that moved."""
    return [(c, a, b) for c, (a, b) in enumerate(zip(before, after)) if a != b]


def rand_index(before: Sequence[int], after: Sequence[int]) -> float:
    """Share of class pairs that are grouped alike (together, or apart) in both mappings: 1.0
    when only the prompt indices were permuted."""
    a, b = torch.tensor(before), torch.tensor(after)
    same_a, same_b = a[:, None] == a[None], b[:, None] == b[None]
    n = len(a)
    if n < 2:
        return 1.0
    agree = (same_a == same_b).sum() - n  # off-diagonal pairs, each counted twice
    return float(agree) / (n * (n - 1))


def markdown_report(records: Sequence[MappingRecord], names: Sequence[str], num_prompts: int,
                    work_dir: str, max_changes: int = 8) -> str:
    final = records[-1]
    lines = [f'# DA-VPT class -> prompt mapping of `{work_dir}`', '',
             f'{len(names)} classes on {num_prompts} guided prompts; {len(records)} mappings '
             f'(initial and after each remap), final: {final.label}.', '',
             f'## Final mapping ({final.label})', '', '| prompt | classes | which |',
             '|---:|---:|---|']
    for p, group in enumerate(prompt_groups(final.class_to_prompt, num_prompts)):
        lines.append(f'| {p} | {len(group)} | {", ".join(names[c] for c in group) or "-"} |')
    lines += ['', '## Changes from remap to remap', '',
              '| after | source | classes moved | grouping kept (Rand) | prompts used '
              '| classes per prompt (min-max) | moves (class: old -> new prompt) |',
              '|---|---|---:|---:|---:|---|---|']
    previous = None
    for r in records:
        sizes = [len(g) for g in prompt_groups(r.class_to_prompt, num_prompts)]
        used = sum(s > 0 for s in sizes)
        if previous is None:
            moved, kept, text = '-', '-', '-'
        else:
            moves = changes(previous.class_to_prompt, r.class_to_prompt)
            moved = f'{len(moves)} ({len(moves) / len(names):.0%})'
            kept = f'{rand_index(previous.class_to_prompt, r.class_to_prompt):.2f}'
            text = ', '.join(f'{names[c]}: {a} -> {b}' for c, a, b in moves[:max_changes])
            text += f', ... (+{len(moves) - max_changes})' if len(moves) > max_changes else ''
            text = text or 'none'
        lines.append(f'| {r.label} | {"+".join(r.sources)} | {moved} | {kept} | {used} | '
                     f'{min(sizes)}-{max(sizes)} | {text} |')
        previous = r
    return '\n'.join(lines) + '\n'


def write_csv(path: str, records: Sequence[MappingRecord], names: Sequence[str]) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['class', 'name', *(r.label for r in records)])
        for c, name in enumerate(names):
            writer.writerow([c, name, *(r.class_to_prompt[c] for r in records)])


def plot(path: str, records: Sequence[MappingRecord], names: Sequence[str],
         num_prompts: int) -> None:
    """Class x remap heat map coloured by prompt (classes grouped by their final prompt), and
    the share of classes that moved at each remap."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import BoundaryNorm, ListedColormap

    grid = np.array([r.class_to_prompt for r in records]).T  # C x R
    order = np.lexsort((np.arange(len(names)), grid[:, -1]))
    grid = grid[order]
    base = plt.get_cmap('tab20' if num_prompts <= 20 else 'turbo')
    colors = base(np.arange(num_prompts) % 20) if num_prompts <= 20 else \
        base(np.linspace(0, 1, num_prompts))
    cmap = ListedColormap(colors)
    norm = BoundaryNorm(np.arange(num_prompts + 1) - 0.5, num_prompts)
    C, R = grid.shape
    show_names = C <= 80
    fig_h = min(3 + (0.22 * C if show_names else 6), 30)
    fig, (ax, ax_moved) = plt.subplots(
        2, 1, figsize=(max(6, 2.5 + 0.45 * R), fig_h), sharex=True,
        gridspec_kw=dict(height_ratios=[max(4, fig_h - 2.5), 1.5]))
    im = ax.imshow(grid, aspect='auto', cmap=cmap, norm=norm, interpolation='nearest')
    if show_names and C * R <= 2000:
        for i in range(C):
            for j in range(R):
                r, g, b = colors[grid[i, j]][:3]
                ink = 'black' if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else 'white'
                ax.text(j, i, grid[i, j], ha='center', va='center', fontsize=7, color=ink)
    if show_names:
        ax.set_yticks(range(C), [names[c] for c in order], fontsize=8)
    else:
        ax.set_ylabel('classes (grouped by final prompt)')
        ax.set_yticks([])
    ax.set_title('class -> prompt mapping (colour and number: prompt index)')
    cbar = fig.colorbar(im, ax=[ax, ax_moved], ticks=range(num_prompts), fraction=0.04)
    cbar.set_label('prompt')
    moved = [0.] + [len(changes(a.class_to_prompt, b.class_to_prompt)) / C
                    for a, b in zip(records, records[1:])]
    ax_moved.bar(range(R), moved, color='0.4')
    ax_moved.set_ylim(0, max(0.05, max(moved) * 1.15))
    ax_moved.set_ylabel('moved')
    ax_moved.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    step = max(1, R // 25)
    ax_moved.set_xticks(range(0, R, step), [records[j].label for j in range(0, R, step)],
                        rotation=45, ha='right', fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches='tight')
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(description='Report the DA-VPT class -> prompt mapping of '
                                     'a work dir (remap history and checkpoints)')
    parser.add_argument('work_dir')
    parser.add_argument('--out', help='output directory (default: WORK_DIR/mapping_report)')
    parser.add_argument('--config', help="for the class names (default: the work dir's config)")
    parser.add_argument('--max-changes', type=int, default=8,
                        help='moved classes listed per remap in the table')
    args = parser.parse_args(argv)

    if not osp.isdir(args.work_dir):
        sys.exit(f'no DA-VPT mapping in {args.work_dir}: no such directory')
    logs = read_logs(args.work_dir)
    ckpt_records, names = read_checkpoints(args.work_dir)
    records = merge_records(logs, ckpt_records)
    if not records:
        sys.exit(f'no DA-VPT mapping in {args.work_dir}: no {args.work_dir}/*/'
                 f'{REMAP_HISTORY_FILE} and no checkpoint with {MAPPING_KEY}')
    num_classes = len(records[-1].class_to_prompt)
    config = args.config
    if config is None:  # the one the run dumped into its work dir
        from mmdavpt.utils.workdir import find_config
        config = find_config(args.work_dir)
    num_prompts = max(max(r.class_to_prompt) for r in records) + 1
    if config is not None:
        from mmengine.config import Config
        cfg = Config.fromfile(config)
        if args.config or names is None:
            names = classes_from_config(cfg) or names
        cfg_prompts = cfg.model.get('backbone', {}).get('num_guided_prompts')
        num_prompts = max(num_prompts, cfg_prompts or 0)
    if names is None or len(names) != num_classes:
        names = [str(c) for c in range(num_classes)]

    report = markdown_report(records, names, num_prompts, args.work_dir, args.max_changes)
    print(report)
    out = args.out or osp.join(args.work_dir, 'mapping_report')
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, 'mapping_report.md'), 'w') as f:
        f.write(report)
    write_csv(osp.join(out, 'mapping_history.csv'), records, names)
    plot(osp.join(out, 'mapping_report.png'), records, names, num_prompts)
    print(f'written: {out}/mapping_report.md, mapping_history.csv, mapping_report.png')
    return out


if __name__ == '__main__':
    main()
