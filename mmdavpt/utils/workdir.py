"""Reading an MMEngine work directory: the config each run dumped, test metrics, training
scalars, checkpoints, and which config they belong to.

A work directory ``W`` of ``tools/train.py CONFIG --work-dir W`` (and of ``tools/test.py CONFIG
CKPT --work-dir W``) holds

- ``W/<config name>.py``: the config, dumped by every ``Runner`` built from it,
- ``W/<timestamp>/``: one folder per run, with ``<timestamp>.json`` (a test run's metrics),
  ``vis_data/scalars.json`` (a training run's scalars) and ``vis_data/config.py`` (the run's
  config, written by MMEngine's ``LocalVisBackend``),
- ``W/*.pth``: the checkpoints of the training runs; their ``meta['experiment_name']`` is
  ``<config name>_<timestamp>`` (or ``<cfg.experiment_name>_<timestamp>``).

One work directory is one experiment: a directory with the dumped configs of two configs holds
runs of both, and its numbers cannot be told apart (:class:`WorkDirConflict`).
"""
import glob
import json
import os.path as osp
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

#: Test metric read by :func:`read_work_dir` (MMPretrain's ``Accuracy``).
TOP1 = 'accuracy/top1'
_TIMESTAMP = r'\d{8}_\d{6}'


class WorkDirConflict(ValueError):
    """A work directory holds the runs or checkpoints of another config."""


# ---- runs ------------------------------------------------------------------------------------
def read_json_lines(path: str) -> List[dict]:
    """The JSON objects of a file with one object a line (blank lines skipped)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_dirs(work_dir: str) -> List[str]:
    """The timestamped run folders of a work dir, oldest first."""
    return sorted(d for d in glob.glob(osp.join(work_dir, '*'))
                  if osp.isdir(d) and re.fullmatch(_TIMESTAMP, osp.basename(d)))


def dumped_configs(work_dir: str) -> List[str]:
    """The config files the runners dumped into ``work_dir`` (``W/*.py``), sorted by name."""
    return sorted(glob.glob(osp.join(work_dir, '*.py')))


def find_config(work_dir: str) -> Optional[str]:
    """The config the runs of ``work_dir`` dumped there; ``None`` if there is none.

    Raises:
        WorkDirConflict: the runs of more than one config share the directory.
    """
    configs = dumped_configs(work_dir)
    if len(configs) > 1:
        names = ', '.join(osp.basename(c) for c in configs)
        raise WorkDirConflict(
            f'{work_dir} holds the runs of {len(configs)} configs ({names}): its results cannot '
            'be told apart. Give each config its own --work-dir (train and test it there).')
    return configs[0] if configs else None


@dataclass
class EvaluationRun:
    """One ``tools/test.py`` run of a work dir.

    Attributes:
        run_dir: its timestamped folder.
        metrics: the metrics it wrote (``<timestamp>.json``).
        checkpoint: the tested checkpoint (the run config's ``load_from``), ``None`` if unknown.
    """
    run_dir: str
    metrics: dict
    checkpoint: Optional[str]


def _run_load_from(run_dir: str) -> Optional[str]:
    """``load_from`` of the config MMEngine's ``LocalVisBackend`` saved for a run."""
    from mmengine.config import Config
    path = osp.join(run_dir, 'vis_data', 'config.py')
    if not osp.isfile(path):
        return None
    return Config.fromfile(path, import_custom_modules=False).get('load_from')


def evaluation_runs(work_dir: str, *, metric: Optional[str] = None) -> List[EvaluationRun]:
    """The test runs of ``work_dir`` (those with a metrics file; with ``metric``, only those
    that report it), oldest first."""
    runs = []
    for run in run_dirs(work_dir):
        path = osp.join(run, f'{osp.basename(run)}.json')
        if not osp.isfile(path):
            continue
        try:
            metrics = read_json_lines(path)[-1]
        except (json.JSONDecodeError, IndexError):
            continue
        if not isinstance(metrics, dict) or (metric is not None and metric not in metrics):
            continue
        runs.append(EvaluationRun(run, metrics, _run_load_from(run)))
    return runs


def selected_test(work_dir: str, *, metric: str = TOP1) -> Tuple[Optional[float], Optional[str]]:
    """The latest test of a val-selected ``best_*`` checkpoint, else the latest test:
    ``(metric value, checkpoint)``; ``(None, None)`` without a test run."""
    runs = evaluation_runs(work_dir, metric=metric)
    best = [r for r in runs if r.checkpoint and osp.basename(r.checkpoint).startswith('best_')]
    chosen = (best or runs or [None])[-1]
    if chosen is None:
        return None, None
    return float(chosen.metrics[metric]), chosen.checkpoint


def train_scalars(work_dir: str) -> List[dict]:
    """The scalar records of the latest training run (train iterations and val epochs)."""
    for run in reversed(run_dirs(work_dir)):
        path = osp.join(run, 'vis_data', 'scalars.json')
        if osp.isfile(path):
            rows = read_json_lines(path)
            if any('loss' in r for r in rows):
                return rows
    return []


def resumed_train_scalars(work_dir: str) -> List[dict]:
    """The scalar records of every run folder of ``work_dir``, oldest first: unlike
    :func:`train_scalars` (the latest training only), a training resumed with ``--resume``, which
    logs in a new folder, keeps its earlier epochs; a later record of the same step replaces an
    earlier one."""
    rows: Dict[tuple, dict] = {}
    for run_dir in run_dirs(work_dir):
        path = osp.join(run_dir, 'vis_data', 'scalars.json')
        if osp.isfile(path):
            for r in read_json_lines(path):
                rows[('loss' in r, r.get('step'), r.get('iter'))] = r
    return sorted(rows.values(), key=lambda r: (r.get('step', 0), 'loss' not in r))


def best_val(rows: Iterable[dict], *, metric: str = TOP1) -> Tuple[Optional[float], Optional[int]]:
    """(best val value, its epoch) from the training scalars; the first epoch wins ties, as
    ``CheckpointHook(rule='greater')`` keeps the first best."""
    best, epoch = None, None
    for r in rows:
        if metric in r and 'loss' not in r and (best is None or r[metric] > best):
            best, epoch = float(r[metric]), int(r['step'])
    return best, epoch


def seconds_per_step(rows: Iterable[dict]) -> Optional[float]:
    """Mean logged training iteration time (data loading included), first log window excluded
    (it holds the start-up cost) unless it is the only one."""
    times = [float(r['time']) for r in rows if 'loss' in r and 'time' in r]
    if len(times) > 1:
        times = times[1:]
    return sum(times) / len(times) if times else None


# ---- which config the checkpoints belong to --------------------------------------------------
def run_name(cfg) -> str:
    """What the runner of ``cfg`` puts before the timestamp of its experiment name:
    ``cfg.experiment_name``, else the config file name without ``.py``."""
    if cfg.get('experiment_name'):
        return cfg.experiment_name
    return osp.splitext(osp.basename(cfg.filename))[0]


def checkpoint_run_names(work_dir: str) -> Dict[str, str]:
    """checkpoint file -> :func:`run_name` of the run that saved it, for the checkpoints of
    ``work_dir`` that MMEngine saved (``meta['experiment_name']``)."""
    import torch

    from mmdavpt.utils.compat import register_mmengine_safe_globals
    register_mmengine_safe_globals()  # torch.load (weights_only) reads mmengine checkpoints
    names = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*.pth'))):
        meta = torch.load(path, map_location='cpu', mmap=True).get('meta') or {}
        match = re.fullmatch(rf'(.+)_{_TIMESTAMP}', str(meta.get('experiment_name', '')))
        if match:
            names[path] = match.group(1)
    return names


def check_work_dir_owner(work_dir: str, *, name: str) -> None:
    """Refuse to train ``name`` into a work dir that holds another config's checkpoints (its
    checkpoints would be overwritten or mixed with this run's).

    Raises:
        WorkDirConflict: naming both configs and the fix.
    """
    if not osp.isdir(work_dir):
        return
    others = {p: n for p, n in checkpoint_run_names(work_dir).items() if n != name}
    if others:
        path, other = next(iter(others.items()))
        raise WorkDirConflict(
            f'{work_dir} holds checkpoints of another config ({other}, e.g. '
            f'{osp.basename(path)}); training {name} there would overwrite or mix them. '
            f'Pass another --work-dir for {name}.')


# ---- the classification results of a work dir ------------------------------------------------
@dataclass
class Result:
    """What one classification work directory holds."""
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


def read_work_dir(work_dir: str, *, count_params: bool = True) -> Result:
    """Everything the results table needs from one classification work directory.

    Raises:
        FileNotFoundError: no dumped config (not an MMEngine work dir).
        WorkDirConflict: the runs of several configs share the directory.
    """
    from mmengine.config import Config

    from mmdavpt.utils.params import count_config_tunable
    config_path = find_config(work_dir)
    if config_path is None:
        raise FileNotFoundError(f'{work_dir}: no dumped config (*.py); is it an mmengine work dir?')
    cfg = Config.fromfile(config_path)
    test_top1, checkpoint = selected_test(work_dir)
    rows = train_scalars(work_dir)
    val_top1, val_epoch = best_val(rows)
    params = count_config_tunable(cfg.model, scope=cfg.get('default_scope', 'mmpretrain')) \
        if count_params else None
    return Result(work_dir, row_name(config_path), config_task(cfg), test_top1, checkpoint,
                  val_top1, val_epoch, params, seconds_per_step(rows))
