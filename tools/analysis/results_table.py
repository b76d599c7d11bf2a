"""Print the paper-style classification table from mmengine work directories.

    python tools/analysis/results_table.py WORK_DIR [WORK_DIR ...] [--format md|csv]

A work directory is one experiment: ``tools/train.py CONFIG --work-dir W`` followed by
``tools/test.py CONFIG W/best_accuracy_top1_epoch_N.pth --work-dir W``. From it this tool reads

- the config that the runner dumped into ``W`` (the experiment's method and task),
- the test metrics ``W/<timestamp>/<timestamp>.json`` written by ``tools/test.py`` (the latest
  test of the val-selected ``best_*.pth`` checkpoint; another checkpoint is used only if no best
  one was tested, and the table marks it with ``*``; the tested checkpoint is the ``load_from``
  of the run's config ``W/<timestamp>/vis_data/config.py``),
- the training scalars ``W/<timestamp>/vis_data/scalars.json`` (best val accuracy, s/step),

and counts the tunable parameters (``requires_grad``, head included) by building the model on the
``meta`` device. Rows are ``backbone_method`` (the config name without its task part, e.g.
``vit-b16-in21k_davpt``); columns are the tasks, the VTAB-1k group means (natural, specialized,
structured), their mean, the FGVC mean, and the mean tunable parameters in millions. Means are
printed only when every task of the group has a result. A work directory that holds the dumped
configs of several configs is skipped with a message: its results cannot be told apart
(:mod:`mmdavpt.utils.workdir`).
"""
import argparse
import glob
import sys
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from mmdavpt.datasets import FGVC_DATASETS, VTAB_GROUPS
from mmdavpt.utils.table import FORMATS, format_table
from mmdavpt.utils.workdir import Result, WorkDirConflict, read_work_dir

FGVC_TASKS = tuple(FGVC_DATASETS)


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


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dirs', nargs='+', help='mmengine work directories (globs allowed)')
    parser.add_argument('--format', choices=FORMATS, default='md')
    parser.add_argument('--no-params', action='store_true',
                        help='skip counting the tunable parameters (no model is built)')
    args = parser.parse_args(argv)
    dirs = [d for pattern in args.work_dirs for d in sorted(glob.glob(pattern)) or [pattern]]
    results = []
    for d in dirs:
        try:
            results.append(read_work_dir(d, count_params=not args.no_params))
        except (FileNotFoundError, WorkDirConflict) as e:
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
