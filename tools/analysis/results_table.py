"""Print the paper-style classification table from mmengine work directories.

    python tools/analysis/results_table.py WORK_DIR [WORK_DIR ...] [--format md|csv]

A work directory is one experiment: ``tools/train.py CONFIG --work-dir W`` followed by
``tools/test.py CONFIG W/best_accuracy_top1_epoch_N.pth --work-dir W``. From it this tool reads

- the config that the runner dumped into ``W`` (the experiment's method and task),
- the test metrics ``W/<timestamp>/<timestamp>.json`` written by ``tools/test.py`` (the latest
  test of the val-selected ``best_*.pth`` checkpoint; another checkpoint is used only if no best
  one was tested, and the table marks it with ``*``),
- the training scalars ``W/<timestamp>/vis_data/scalars.json`` (best val accuracy, s/step),

and counts the tunable parameters (``requires_grad``, head included) by building the model on the
``meta`` device. Rows are ``backbone_method`` (the config name without its task part, e.g.
``vit-b16-in21k_davpt``); columns are the tasks, the VTAB-1k group means (natural, specialized,
structured), their mean, the FGVC mean, and the mean tunable parameters in millions. Means are
printed only when every task of the group has a result.
"""
import argparse
import glob
import json
import os.path as osp
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from mmdavpt.datasets import FGVC_DATASETS, VTAB_TASKS

#: VTAB-1k group -> its tasks, in the usual column order.
VTAB_GROUPS = OrderedDict(
    (group, tuple(t for t, (g, _) in VTAB_TASKS.items() if g == group))
    for group in ('natural', 'specialized', 'structured'))
FGVC_TASKS = tuple(FGVC_DATASETS)
METRIC = 'accuracy/top1'


@dataclass
class Result:
    """What one work directory holds."""
    work_dir: str
    row: str                      # backbone_method
    task: str                     # VTAB task, FGVC dataset name, or another dataset's name
    test_top1: Optional[float]    # %, the val-selected checkpoint's test accuracy
    test_checkpoint: Optional[str]
    best_val_top1: Optional[float]
    best_val_epoch: Optional[int]
    tunable_params: Optional[int]
    sec_per_step: Optional[float]

    @property
    def selected_by_val(self) -> bool:
        return bool(self.test_checkpoint) and osp.basename(self.test_checkpoint).startswith(
            'best_')


# ---------------------------------------------------------------------------------------------
def _json_lines(path: str) -> List[dict]:
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def _run_dirs(work_dir: str) -> List[str]:
    """The timestamped run folders of a work dir, oldest first."""
    return sorted(d for d in glob.glob(osp.join(work_dir, '*')) if osp.isdir(d)
                  and re.fullmatch(r'\d{8}_\d{6}', osp.basename(d)))


def test_runs(work_dir: str) -> List[Tuple[dict, Optional[str]]]:
    """(metrics, checkpoint) of every test run in ``work_dir``, oldest first.

    The checkpoint is read from the ``load_from`` line of the run's log (``None`` if absent).
    """
    runs = []
    for run in _run_dirs(work_dir):
        name = osp.basename(run)
        path = osp.join(run, f'{name}.json')
        if not osp.isfile(path):
            continue
        try:
            with open(path) as f:
                metrics = json.load(f)
        except json.JSONDecodeError:
            continue
        if not isinstance(metrics, dict) or METRIC not in metrics:
            continue
        checkpoint = None
        log = osp.join(run, f'{name}.log')
        if osp.isfile(log):
            with open(log, errors='replace') as f:
                found = re.findall(r"^load_from = '([^']*)'", f.read(), flags=re.M)
            checkpoint = found[-1] if found else None
        runs.append((metrics, checkpoint))
    return runs


def selected_test(work_dir: str) -> Tuple[Optional[float], Optional[str]]:
    """The latest test of a ``best_*`` checkpoint, else the latest test: (top-1 %, checkpoint)."""
    runs = test_runs(work_dir)
    best = [r for r in runs if r[1] and osp.basename(r[1]).startswith('best_')]
    chosen = (best or runs or [None])[-1]
    if chosen is None:
        return None, None
    return float(chosen[0][METRIC]), chosen[1]


def train_scalars(work_dir: str) -> List[dict]:
    """The scalar records of the latest training run (train iterations and val epochs)."""
    for run in reversed(_run_dirs(work_dir)):
        path = osp.join(run, 'vis_data', 'scalars.json')
        if osp.isfile(path):
            rows = _json_lines(path)
            if any('loss' in r for r in rows):
                return rows
    return []


def best_val(rows: Iterable[dict]) -> Tuple[Optional[float], Optional[int]]:
    """(best val top-1 %, its epoch) from the training scalars; the first epoch wins ties, as
    ``CheckpointHook(rule='greater')`` keeps the first best."""
    best, epoch = None, None
    for r in rows:
        if METRIC in r and 'loss' not in r and (best is None or r[METRIC] > best):
            best, epoch = float(r[METRIC]), int(r['step'])
    return best, epoch


def seconds_per_step(rows: Iterable[dict]) -> Optional[float]:
    """Mean logged training iteration time (data loading included), first log window excluded
    (it holds the start-up cost) unless it is the only one."""
    times = [float(r['time']) for r in rows if 'loss' in r and 'time' in r]
    if len(times) > 1:
        times = times[1:]
    return sum(times) / len(times) if times else None


def find_config(work_dir: str) -> Optional[str]:
    """The config the runner dumped into the work dir (the newest ``*.py`` there)."""
    configs = glob.glob(osp.join(work_dir, '*.py'))
    return max(configs, key=osp.getmtime) if configs else None


def strip_init_cfg(cfg):
    """A copy of a model config without any ``init_cfg`` (no pre-trained weights are read)."""
    if isinstance(cfg, dict):
        return type(cfg)({k: strip_init_cfg(v) for k, v in cfg.items() if k != 'init_cfg'})
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(strip_init_cfg(v) for v in cfg)
    return cfg


def build_model_on_meta(model_cfg: dict, scope: str = 'mmpretrain'):
    """Build a model config in ``scope`` ('mmpretrain' or 'mmseg') on the ``meta`` device (no
    memory, no weights, no init)."""
    import torch

    from mmdavpt.registry import build_model
    with torch.device('meta'):
        return build_model(strip_init_cfg(model_cfg), scope)


def count_tunable(model) -> int:
    """Parameters with ``requires_grad`` (prompts, tuned biases, CLS token, head, ...)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def config_task(cfg) -> str:
    """The task of a classification config, from its test dataset."""
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:  # dataset wrappers
        dataset = dataset.dataset
    return dataset.get('task') or dataset.get('dataset_name') or str(dataset.get('type'))


def row_name(config_path: str) -> str:
    """``vit-b16-in21k_davpt_vtab-cifar.py`` -> ``vit-b16-in21k_davpt``."""
    stem = osp.splitext(osp.basename(config_path))[0]
    parts = stem.split('_')
    return '_'.join(parts[:2]) if len(parts) >= 3 else stem


_param_cache: Dict[str, int] = {}


def read_work_dir(work_dir: str, count_params: bool = True) -> Result:
    """Everything the table needs from one work directory."""
    from mmengine.config import Config
    config_path = find_config(work_dir)
    if config_path is None:
        raise FileNotFoundError(f'{work_dir}: no dumped config (*.py); is it an mmengine work dir?')
    cfg = Config.fromfile(config_path)
    task = config_task(cfg)
    test_top1, checkpoint = selected_test(work_dir)
    rows = train_scalars(work_dir)
    val_top1, val_epoch = best_val(rows)
    params = None
    if count_params:
        key = repr(strip_init_cfg(cfg.model.to_dict()))
        if key not in _param_cache:
            _param_cache[key] = count_tunable(
                build_model_on_meta(cfg.model, cfg.get('default_scope', 'mmpretrain')))
        params = _param_cache[key]
    return Result(work_dir, row_name(config_path), task, test_top1, checkpoint, val_top1,
                  val_epoch, params, seconds_per_step(rows))


# ---------------------------------------------------------------------------------------------
def _mean(values: List[Optional[float]]) -> Optional[float]:
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _acc(per_task: Dict[str, Result], task: str) -> Optional[float]:
    r = per_task.get(task)
    return None if r is None else r.test_top1


def _cell(per_task: Dict[str, Result], task: str) -> str:
    """Test top-1 of a task, marked ``*`` when the tested checkpoint is not the best-val one."""
    r = per_task.get(task)
    mark = '*' if r is not None and r.test_top1 is not None and not r.selected_by_val else ''
    return _fmt(_acc(per_task, task)) + mark


def build_table(results: List[Result]) -> Tuple[List[str], List[List[str]]]:
    """Header and rows of the paper-style table."""
    by_row: Dict[str, Dict[str, Result]] = OrderedDict()
    for r in results:
        by_row.setdefault(r.row, {})[r.task] = r
    tasks_seen = {r.task for r in results}
    vtab = [t for group in VTAB_GROUPS.values() for t in group]
    fgvc = list(FGVC_TASKS)
    other = sorted(tasks_seen - set(vtab) - set(fgvc))
    vtab_cols = [t for t in vtab if t in tasks_seen]
    fgvc_cols = [t for t in fgvc if t in tasks_seen]
    header = ['Method', 'Params (M)'] + other
    if vtab_cols:
        header += vtab_cols + [g.capitalize() for g in VTAB_GROUPS] + ['VTAB mean']
    if fgvc_cols:
        header += fgvc_cols + ['FGVC mean']
    table = []
    for row, per_task in by_row.items():
        params = [r.tunable_params for r in per_task.values() if r.tunable_params is not None]
        line = [row, _fmt(sum(params) / len(params) / 1e6 if params else None, 3)]
        line += [_cell(per_task, t) for t in other]
        if vtab_cols:
            groups = [_mean([_acc(per_task, t) for t in tasks]) for tasks in VTAB_GROUPS.values()]
            line += [_cell(per_task, t) for t in vtab_cols] + [_fmt(g) for g in groups]
            line += [_fmt(_mean(groups))]
        if fgvc_cols:
            line += [_cell(per_task, t) for t in fgvc_cols]
            line += [_fmt(_mean([_acc(per_task, t) for t in fgvc]))]
        table.append(line)
    return header, table


def format_table(header: List[str], rows: List[List[str]], fmt: str = 'md') -> str:
    if fmt == 'csv':
        return '\n'.join(','.join(line) for line in [header] + rows)
    widths = [max(len(line[i]) for line in [header] + rows) for i in range(len(header))]
    out = ['| ' + ' | '.join(h.ljust(w) for h, w in zip(header, widths)) + ' |',
           '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
    out += ['| ' + ' | '.join(c.ljust(w) for c, w in zip(line, widths)) + ' |' for line in rows]
    return '\n'.join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dirs', nargs='+', help='mmengine work directories (globs allowed)')
    parser.add_argument('--format', choices=('md', 'csv'), default='md')
    parser.add_argument('--no-params', action='store_true',
                        help='skip counting the tunable parameters (no model is built)')
    args = parser.parse_args(argv)
    dirs = [d for pattern in args.work_dirs for d in sorted(glob.glob(pattern)) or [pattern]]
    results = []
    for d in dirs:
        try:
            results.append(read_work_dir(d, count_params=not args.no_params))
        except FileNotFoundError as e:
            print(f'skipped: {e}', file=sys.stderr)
    if not results:
        print('no results found', file=sys.stderr)
        return 1
    print(format_table(*build_table(results), fmt=args.format))
    if any(r.test_top1 is not None and not r.selected_by_val for r in results):
        print('* tested checkpoint is not the val-selected best_*.pth', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
