"""Reproduce a table of the paper: plan every (config, seed) run of the shipped configs, launch
what is left, and set the results beside the paper's numbers (``tools/reproduce.py``).

A planner, not a scheduler: it walks the plan in order and launches each run through the
project's own launchers (in-process ``tools/train.py``/``tools/test.py``, ``tools/dist_train.sh``
/ ``tools/dist_test.sh``, ``tools/slurm_train.sh`` / ``tools/slurm_test.sh``), or prints the
commands for another launcher. The protocol (docs/reproduce.md):

- VTAB-1k and FGVC: per (config, seed) a *selection* run (train on ``train800``/``train.json``,
  validate every epoch on ``val200``/``val.json``, the config as shipped) and then the *final*
  run (the same config on ``train800val200``/``train.json + val.json`` for the full schedule, no
  validation, the last checkpoint tested once on ``test``). The selection run picks nothing:
  the paper fixes the schedule and each method's setting, so its val accuracy is reported as the
  check that the setting trains, and the final run waits for it.
- ADE20K and PASCAL Context: one run per (config, seed): train for the full schedule without
  validation, test the last checkpoint once single-scale and once with ``--tta`` (multi-scale +
  flip).

Every run has its own work directory named after the digest of its merged config
(:func:`mmdavpt_lab.compare.config_digest`), so a run is reused only for the same merged config:
``{work_root}/{table}/{config name}/seed{S}_{stage}_{digest[:8]}``. What a work directory holds
decides the run's state (:func:`run_state`); an interrupted training is resumed
(``tools/train.py --resume``), a finished one is not run again.
"""
import copy
import csv
import io
import json
import math
import os
import os.path as osp
import shlex
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config

from mmdavpt.datasets import FGVC_DATASETS, VTAB_GROUPS, VTAB_TASKS
from mmdavpt.utils import workdir
from mmdavpt.utils.table import format_table
from mmdavpt_lab.compare import (
    METRICS,
    config_digest,
    final_checkpoint,
    mean_std,
    parse_cfg_options,
    read_test_metrics,
)

#: The repository root (configs/ and tools/ are found there).
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: The paper's numbers, each naming the table it comes from.
PAPER_RESULTS = osp.join(osp.dirname(osp.abspath(__file__)), 'paper_results.json')

TABLES = ('vtab1k', 'fgvc', 'ade20k', 'pascal-context-59', 'pascal-context-60')
CLS_TABLES = ('vtab1k', 'fgvc')
CLS_METHODS = ('linear', 'full', 'bias', 'vpt-shallow', 'vpt-deep', 'davpt', 'davpt-plus')
SEG_METHODS = ('linear', 'full', 'bias', 'vpt', 'davpt', 'davpt-plus')
PRETRAINS = ('in21k', 'mae', 'mocov3')
LAUNCHERS = ('none', 'pytorch', 'slurm')
#: The protocol's total training batch (images per iteration over all GPUs): the paper's 32 for
#: classification (the configs: 32 on one GPU), SETR's 8 GPUs x 2 images for segmentation.
TOTAL_BATCH = {'cls': 32, 'seg': 16}
#: The test modes of a final run: ``tools/test.py`` without and with ``--tta``.
TEST_MODES = {'cls': ('ss', ), 'seg': ('ss', 'tta')}

#: Written in a run's work dir when it is launched: what the run is (config, options, digest).
RUN_RECORD = 'reproduce_run.json'
#: Written in a run's work dir when a step of it failed (removed once it succeeds).
FAILED_RECORD = 'reproduce_failed.json'
#: The output of a launcher's process for one step: ``reproduce_{step}.log``.
STEP_LOG = 'reproduce_{}.log'

#: Run states (:func:`run_state`).
DONE, TRAINED, INTERRUPTED, FAILED, INCOMPLETE, NOT_RUN, BLOCKED = (
    'done', 'trained, not tested', 'interrupted', 'failed', 'incomplete', 'not run',
    'not run (its selection run did not finish)')
#: A task of the table that --tasks left out.
NOT_PLANNED = 'not planned (--tasks)'


def family(table: str) -> str:
    """``'cls'`` (VTAB-1k, FGVC) or ``'seg'``."""
    check_choice('table', table, TABLES)
    return 'cls' if table in CLS_TABLES else 'seg'


def check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f'{what} {value!r} is not one of {", ".join(choices)}')


def table_tasks(table: str) -> List[str]:
    """The tasks of a table: the 19 VTAB-1k tasks, the 5 FGVC datasets, or the one
    segmentation dataset (named like the table)."""
    if table == 'vtab1k':
        return list(VTAB_TASKS)
    if table == 'fgvc':
        return list(FGVC_DATASETS)
    check_choice('table', table, TABLES)
    return [table]


def table_methods(table: str) -> Tuple[str, ...]:
    return CLS_METHODS if family(table) == 'cls' else SEG_METHODS


def config_path(table: str, method: str, task: str, pretrain: str = 'in21k',
                root: str = ROOT) -> str:
    """The shipped config of one (method, pre-training, task), an absolute path.

    Raises:
        FileNotFoundError: no such config (naming the path or pattern looked for).
    """
    if family(table) == 'cls':
        data = ('vtab-' if table == 'vtab1k' else 'fgvc-') + task.replace('_', '-')
        path = osp.join(root, 'configs', 'classification', method,
                        f'vit-b16-{pretrain}_{method}_{data}.py')
        if not osp.isfile(path):
            raise FileNotFoundError(f'no config {path}')
        return path
    folder = osp.join(root, 'configs', 'segmentation')
    prefix, suffix = f'setr_pup_{method}_vit-l_', f'_{table}-'
    found = sorted(f for f in os.listdir(folder)
                   if f.startswith(prefix) and suffix in f and f.endswith('.py'))
    if len(found) != 1:
        raise FileNotFoundError(f'expected one config {folder}/{prefix}*{suffix}*.py, found '
                                f'{found or "none"}')
    return osp.join(folder, found[0])


# ---- the plan --------------------------------------------------------------------------------
@dataclass
class Run:
    """One planned training (and its tests).

    Attributes:
        stage: ``'select'`` (classification: train on train, validate on val), ``'final'``
            (train on the final training split and test once).
        config: the shipped config (absolute path).
        cfg_options: the ``--cfg-options`` of the run (the user's, then the planner's).
        digest: :func:`mmdavpt_lab.compare.config_digest` of the merged config.
        checkpoint: the checkpoint the training ends with (what the tests read).
        tests: the test modes (``'ss'``, ``'tta'``); none for a selection run.
        after: the work dir of the run that must finish first (the selection run).
    """
    table: str
    method: str
    pretrain: str
    task: str
    seed: int
    stage: str
    config: str
    cfg_options: List[str]
    digest: str
    work_dir: str
    checkpoint: str
    tests: Tuple[str, ...] = ()
    after: Optional[str] = None
    scope: str = 'mmpretrain'

    @property
    def name(self) -> str:
        return osp.splitext(osp.basename(self.config))[0]

    @property
    def label(self) -> str:
        return f'{self.name} seed {self.seed} {self.stage}'


class _Configs:
    """Each config read once; a run's merged config is a copy with its options merged, as
    ``tools/train.py --cfg-options`` merges them (:func:`mmdavpt_lab.compare.merged_config`)."""

    def __init__(self) -> None:
        self._read: Dict[str, Config] = {}

    def merged(self, config: str, options: Sequence[str]) -> Config:
        if config not in self._read:
            self._read[config] = Config.fromfile(config)
        cfg = copy.deepcopy(self._read[config])
        if options:
            cfg.merge_from_dict(parse_cfg_options(options))
        return cfg


def _option_key(option: str) -> str:
    if '=' not in option:
        raise ValueError(f'--cfg-options takes key=value pairs, got {option!r}')
    return option.split('=', 1)[0]


def _overlaps(key: str, other: str) -> bool:
    return key == other or key.startswith(other + '.') or other.startswith(key + '.')


def _dataset_key(cfg: Config, loader: str) -> Optional[str]:
    """``{loader}.dataset`` (``.dataset`` again through dataset wrappers), ``None`` when the
    config has no such dataloader."""
    if cfg.get(loader) is None:
        return None
    key, dataset = f'{loader}.dataset', cfg[loader].dataset
    while 'dataset' in dataset and 'data_root' not in dataset:
        key, dataset = f'{key}.dataset', dataset.dataset
    return key


def data_root_options(cfg: Config, table: str, data_root: str,
                      loaders: Sequence[str]) -> List[str]:
    """``--cfg-options`` that point the ``loaders`` of a config at ``data_root``.

    ``data_root`` is the folder of the 19 VTAB-1k task folders, the folder of the five FGVC
    dataset folders (each config keeps its folder name: ``CUB_200_2011``, ``nabirds``, ...), or
    the dataset folder of ADE20K (``ADEChallengeData2016``) and PASCAL Context (``VOC2010``).
    """
    options = []
    for loader in loaders:
        key = _dataset_key(cfg, loader)
        if key is None:
            continue
        path = data_root
        if table == 'fgvc':
            old = cfg[loader].dataset.data_root
            path = osp.join(data_root, osp.basename(osp.normpath(old)))
        options.append(f'{key}.data_root={path}')
    return options


def stage_options(cfg: Config, table: str, stage: str, seed: int, gpus: int,
                  user_keys: Sequence[str], data_root: Optional[str]) -> List[str]:
    """What the planner adds to the user's ``--cfg-options`` for one run: the seed (and the
    DA-VPT mapping seed), the final training split without validation, the data root, and
    the per-GPU batch that keeps the protocol's total batch on ``gpus`` GPUs."""
    fam = family(table)
    options = [f'randomness.seed={seed}']
    if cfg.model.get('guidance') is not None:
        options.append(f'model.guidance.mapping.seed={seed}')
    if stage == 'final':
        if fam == 'cls':
            split = 'train800val200' if table == 'vtab1k' else 'trainval'
            options.append(f'train_dataloader.dataset.split={split}')
        options += ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']
        if ((cfg.get('default_hooks') or {}).get('checkpoint') or {}).get('save_best'):
            options.append('default_hooks.checkpoint.save_best=None')
    if data_root is not None:
        loaders = ('train_dataloader', 'val_dataloader') if stage == 'select' \
            else ('train_dataloader', 'test_dataloader')
        options += data_root_options(cfg, table, data_root, loaders)
    if not any(_overlaps(k, 'train_dataloader.batch_size') for k in user_keys):
        total = TOTAL_BATCH[fam]
        if total % gpus:
            raise ValueError(f'{total} images per iteration (the protocol) do not split over '
                             f'{gpus} GPUs; pick a divisor of {total}, or set '
                             'train_dataloader.batch_size yourself (--cfg-options)')
        if cfg.train_dataloader.batch_size != total // gpus:
            options.append(f'train_dataloader.batch_size={total // gpus}')
    # A user's key inside one that the planner drops (val_dataloader=None) is harmless: the
    # planner's options come last and replace it.
    clash = [k for k in user_keys for o in options
             if _overlaps(k, _option_key(o)) and not (k.startswith(_option_key(o) + '.')
                                                      and o.endswith('=None'))]
    if clash:
        raise ValueError(f'--cfg-options {", ".join(sorted(set(clash)))}: the planner sets '
                         'these for the protocol (seeds: --seeds; data: --data-root)')
    return options


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def plan(table: str, *, methods: Optional[Sequence[str]] = None,
         pretrains: Sequence[str] = ('in21k', ), seeds: Sequence[int] = (0, 1, 2),
         work_root: str = 'work_dirs/reproduce', tasks: Optional[Sequence[str]] = None,
         cfg_options: Sequence[str] = (), data_root: Optional[str] = None, gpus: int = 1,
         root: str = ROOT, log: Callable[[str], None] = _stderr) -> List[Run]:
    """Every run of a table, in launch order: per (method, pre-training, task, seed) the
    selection run (classification) and then the final run.

    Args:
        table: one of :data:`TABLES`.
        methods: config method names (default: all of the table's).
        pretrains: classification pre-trainings (segmentation: IN-21k only).
        seeds: the seeds (``randomness.seed``, and the DA-VPT mapping seed).
        work_root: where the work dirs go.
        tasks: a subset of the table's tasks (VTAB-1k tasks, FGVC datasets).
        cfg_options: ``key=value`` overrides of every run (e.g. the weights).
        data_root: the data folder (:func:`data_root_options`).
        gpus: GPUs per run; the per-GPU batch keeps the protocol's total batch.
        root: the repository root.
        log: where the progress goes (default: stderr).

    Raises:
        ValueError, FileNotFoundError: a bad choice, a missing config, an option that the
            planner sets itself.
    """
    fam = family(table)
    methods = list(methods or table_methods(table))
    for m in methods:
        check_choice(f'{table} method', m, table_methods(table))
    for p in pretrains:
        check_choice('pre-training', p, PRETRAINS if fam == 'cls' else ('in21k', ))
    all_tasks = table_tasks(table)
    tasks = list(tasks or all_tasks)
    for t in tasks:
        check_choice(f'{table} task', t, all_tasks)
    if not seeds:
        raise ValueError('no seeds')
    if len(set(seeds)) != len(seeds):
        raise ValueError(f'seeds repeat: {list(seeds)}')
    if gpus < 1:
        raise ValueError(f'gpus must be >= 1, got {gpus}')
    user = list(cfg_options)
    user_keys = [_option_key(o) for o in user]
    stages = ('select', 'final') if fam == 'cls' else ('final', )
    total = len(methods) * len(pretrains) * len(tasks) * len(seeds) * len(stages)
    log(f'[reproduce] planning {total} runs of {table}: reading and digesting each merged '
        'config')
    configs = _Configs()
    runs = []
    for method in methods:
        for pretrain in pretrains:
            for task in tasks:
                config = config_path(table, method, task, pretrain, root)
                base = configs.merged(config, user)
                for seed in seeds:
                    previous = None
                    for stage in stages:
                        options = user + stage_options(base, table, stage, seed, gpus,
                                                       user_keys, data_root)
                        cfg = configs.merged(config, options)
                        digest = config_digest(cfg)
                        name = osp.splitext(osp.basename(config))[0]
                        work_dir = osp.join(work_root, table, name,
                                            f'seed{seed}_{stage}_{digest[:8]}')
                        runs.append(Run(
                            table=table, method=method, pretrain=pretrain, task=task,
                            seed=seed, stage=stage, config=config, cfg_options=options,
                            digest=digest, work_dir=work_dir,
                            checkpoint=final_checkpoint(work_dir, cfg),
                            tests=TEST_MODES[fam] if stage == 'final' else (),
                            after=previous, scope=cfg.get('default_scope', 'mmpretrain')))
                        previous = work_dir
    return runs


# ---- the state of a run ----------------------------------------------------------------------
@dataclass
class RunState:
    """What a run's work dir holds.

    Attributes:
        state: :data:`DONE`, :data:`TRAINED`, :data:`INTERRUPTED` (a checkpoint to resume
            from), :data:`FAILED` (a step launched here failed), :data:`INCOMPLETE` (logs, no
            checkpoint: running, or stopped outside this planner), :data:`NOT_RUN`.
        metrics: test value per mode (``'ss'``, ``'tta'``); a selection run's ``'val'`` (best
            val) with ``'val_epoch'`` and ``'val_last'``.
        log: the log to read (the failed step's, else the latest MMEngine log).
        error: the failed step's error (its last line).
    """
    state: str
    metrics: Dict[str, float] = field(default_factory=dict)
    log: Optional[str] = None
    error: Optional[str] = None


def _latest_log(work_dir: str) -> Optional[str]:
    """The MMEngine log of the latest run folder of ``work_dir`` (or of its test folders)."""
    logs = []
    for folder in [work_dir] + [osp.join(work_dir, f'test_{m}') for m in ('ss', 'tta')]:
        for run_dir in workdir.run_dirs(folder):
            log = osp.join(run_dir, f'{osp.basename(run_dir)}.log')
            if osp.isfile(log):
                logs.append((osp.basename(run_dir), log))
    return max(logs)[1] if logs else None


def selection_metrics(work_dir: str, metric: str = workdir.TOP1) -> Dict[str, float]:
    """A selection run's best val value and its epoch, and the last epoch's val value."""
    rows = workdir.resumed_train_scalars(work_dir)
    best, epoch = workdir.best_val(rows, metric=metric)
    if best is None:
        return {}
    last = [r for r in rows if metric in r and 'loss' not in r][-1]
    return dict(val=best, val_epoch=epoch, val_last=float(last[metric]))


def resumable(work_dir: str) -> bool:
    """Whether ``tools/train.py --resume`` finds a checkpoint in ``work_dir`` (MMEngine's
    ``last_checkpoint`` file, naming a checkpoint that exists)."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return False
    with open(path) as f:
        return osp.isfile(f.read().strip())


def run_state(run: Run) -> RunState:
    """The state of a planned run, from its work dir."""
    w = run.work_dir
    failed = None
    if osp.isfile(osp.join(w, FAILED_RECORD)):
        with open(osp.join(w, FAILED_RECORD)) as f:
            failed = json.load(f)
    metric = METRICS[run.scope]
    if osp.isfile(run.checkpoint):
        metrics = selection_metrics(w, metric) if run.stage == 'select' else {}
        missing = []
        for mode in run.tests:
            try:
                metrics[mode] = float(read_test_metrics(osp.join(w, f'test_{mode}'))[metric])
            except (FileNotFoundError, KeyError):
                missing.append(mode)
        if not missing:
            return RunState(DONE, metrics, _latest_log(w))
        state = TRAINED
    elif resumable(w):
        state = INTERRUPTED
    elif workdir.run_dirs(w) or failed:
        state = INCOMPLETE
    else:
        return RunState(NOT_RUN)
    if failed:
        return RunState(FAILED, log=failed.get('log'), error=failed.get('error'))
    return RunState(state, log=_latest_log(w))


# ---- commands --------------------------------------------------------------------------------
@dataclass
class Step:
    """One command of a run: ``'train'`` or ``'test_{mode}'``."""
    name: str
    argv: List[str]
    env: Dict[str, str] = field(default_factory=dict)
    resume: bool = False
    mode: Optional[str] = None

    def shell(self) -> str:
        prefix = ''.join(f'{k}={shlex.quote(v)} ' for k, v in self.env.items())
        return prefix + shlex.join(self.argv)


def _rel(path: str) -> str:
    """``path`` relative to the current directory when it lies below it."""
    rel = osp.relpath(path)
    return path if rel.startswith('..') else rel


def _job_name(run: Run, step: str) -> str:
    return f'{run.name}_s{run.seed}_{run.stage}_{step}'


def check_launcher(launcher: str, gpus: int, partition: Optional[str]) -> None:
    """Refuse a launcher that cannot run the plan as asked.

    Raises:
        ValueError: an unknown launcher, slurm without a partition, several GPUs in-process.
    """
    check_choice('launcher', launcher, LAUNCHERS)
    if launcher == 'slurm' and not partition:
        raise ValueError('--launcher slurm needs --partition')
    if launcher == 'none' and gpus != 1:
        raise ValueError(f'--launcher none trains on one device; --gpus {gpus} needs '
                         '--launcher pytorch or slurm')


def steps(run: Run, state: RunState, *, launcher: str = 'none', gpus: int = 1,
          partition: Optional[str] = None, python: str = 'python') -> List[Step]:
    """The commands that bring a run from ``state`` to done: the training (``--resume`` when
    there is a checkpoint to resume from) unless it finished, then each missing test.

    Args:
        launcher: ``'none'`` (``python tools/train.py``), ``'pytorch'`` (``tools/dist_*.sh``)
            or ``'slurm'`` (``tools/slurm_*.sh`` on ``partition`` with ``GPUS=gpus``).
    """
    check_launcher(launcher, gpus, partition)
    tools = osp.join(ROOT, 'tools')
    config, options = _rel(run.config), ['--cfg-options', *run.cfg_options]
    out = []
    trained = state.state in (DONE, TRAINED) or osp.isfile(run.checkpoint)
    if not trained:
        resume = resumable(run.work_dir)
        args = ['--work-dir', run.work_dir, *(['--resume'] if resume else []), *options]
        if launcher == 'none':
            argv = [python, _rel(osp.join(tools, 'train.py')), config, *args]
        elif launcher == 'pytorch':
            argv = ['bash', _rel(osp.join(tools, 'dist_train.sh')), config, str(gpus), *args]
        else:
            argv = ['bash', _rel(osp.join(tools, 'slurm_train.sh')), partition,
                    _job_name(run, 'train'), config, *args]
        out.append(Step('train', argv, _slurm_env(gpus) if launcher == 'slurm' else {},
                        resume=resume))
    for mode in run.tests:
        if state.state == DONE:
            break
        test_dir = osp.join(run.work_dir, f'test_{mode}')
        if trained and _has_test(run, mode):
            continue
        args = ['--work-dir', test_dir, *(['--tta'] if mode == 'tta' else []), *options]
        if launcher == 'none':
            argv = [python, _rel(osp.join(tools, 'test.py')), config, run.checkpoint, *args]
        elif launcher == 'pytorch':
            argv = ['bash', _rel(osp.join(tools, 'dist_test.sh')), config, run.checkpoint,
                    str(gpus), *args]
        else:
            argv = ['bash', _rel(osp.join(tools, 'slurm_test.sh')), partition,
                    _job_name(run, f'test_{mode}'), config, run.checkpoint, *args]
        out.append(Step(f'test_{mode}', argv, _slurm_env(gpus) if launcher == 'slurm' else {},
                        mode=mode))
    return out


def _slurm_env(gpus: int) -> Dict[str, str]:
    """``GPUS`` of tools/slurm_*.sh, and ``GPUS_PER_NODE`` when the run takes less than a node
    (the scripts' default node has 8)."""
    return dict(GPUS=str(gpus), **({'GPUS_PER_NODE': str(gpus)} if gpus < 8 else {}))


def _has_test(run: Run, mode: str) -> bool:
    try:
        return METRICS[run.scope] in read_test_metrics(osp.join(run.work_dir, f'test_{mode}'))
    except FileNotFoundError:
        return False


# ---- launching -------------------------------------------------------------------------------
def _write_json(path: str, data: dict) -> None:
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    with open(path, 'w') as f:
        json.dump(data, f, indent=2)


def run_record(run: Run) -> dict:
    """What :data:`RUN_RECORD` holds: the run as planned."""
    record = asdict(run)
    record['config'] = _rel(run.config)
    return record


def _in_process(run: Run, step: Step) -> None:
    """Run a step as ``tools/train.py`` / ``tools/test.py`` do, in this process
    (:func:`mmdavpt.utils.cli.run_train`, :func:`mmdavpt_lab.run.evaluate`); its log is the
    runner's (:func:`_latest_log`)."""
    import gc

    import mmdavpt  # noqa: F401  registers mmdavpt's modules and the torch.load allowlist
    from mmdavpt.utils.cli import LATEST, merge_train_args, run_train
    from mmdavpt_lab.run import evaluate
    if step.name == 'train':
        resume = LATEST if step.resume else None
        cfg = merge_train_args(Config.fromfile(run.config), work_dir=run.work_dir,
                               cfg_options=parse_cfg_options(run.cfg_options), resume=resume)
        run_train(cfg, resume=resume)
    else:
        evaluate(run.config, run.cfg_options, run.checkpoint, run.work_dir, step.mode)
    gc.collect()


def _subprocess(run: Run, step: Step) -> None:
    """Run a step's command with its output in ``{work_dir}/reproduce_{step}.log``; raises
    :class:`RuntimeError` on a non-zero exit."""
    log = osp.join(run.work_dir, STEP_LOG.format(step.name))
    with open(log, 'a') as f:
        f.write(f'$ {step.shell()}\n')
        f.flush()
        code = subprocess.call(step.argv, stdout=f, stderr=subprocess.STDOUT,
                               env=dict(os.environ, **step.env))
    if code:
        raise RuntimeError(f'{step.argv[1]} exited with {code}')


def _check_step(run: Run, step: Step) -> None:
    """A step that ended without error must have left what it is for.

    Raises:
        RuntimeError: no final checkpoint after the training, no metrics after a test.
    """
    if step.name == 'train' and not osp.isfile(run.checkpoint):
        raise RuntimeError(f'the training ended without its final checkpoint {run.checkpoint}')
    if step.mode is not None and not _has_test(run, step.mode):
        raise RuntimeError(f'the test ended without metrics under '
                           f'{osp.join(run.work_dir, "test_" + step.mode)}')


def execute(runs: Sequence[Run], *, launcher: str = 'none', gpus: int = 1,
            partition: Optional[str] = None,
            log: Callable[[str], None] = print) -> Dict[str, RunState]:
    """Launch every run that is not done, in plan order, one step at a time; a run whose
    selection run did not finish is not launched. A failed step writes :data:`FAILED_RECORD`
    (error, log) and the next runs go on.

    Returns:
        work dir -> the run's state afterwards.
    """
    check_launcher(launcher, gpus, partition)
    states: Dict[str, RunState] = {}
    launch = _in_process if launcher == 'none' else _subprocess
    for run in runs:
        state = run_state(run)
        if state.state == DONE:
            log(f'[reproduce] {run.label}: done before ({run.work_dir})')
            states[run.work_dir] = state
            continue
        if run.after is not None and states.get(run.after, RunState(NOT_RUN)).state != DONE:
            log(f'[reproduce] {run.label}: {BLOCKED}')
            states[run.work_dir] = RunState(BLOCKED)
            continue
        _write_json(osp.join(run.work_dir, RUN_RECORD), run_record(run))
        for step in steps(run, state, launcher=launcher, gpus=gpus, partition=partition):
            log(f'[reproduce] {run.label}: {step.name}'
                f'{" (resuming)" if step.resume else ""}: {step.shell()}')
            try:
                launch(run, step)
                _check_step(run, step)
            except Exception as e:  # noqa: BLE001  the next runs go on; the error is recorded
                step_log = osp.join(run.work_dir, STEP_LOG.format(step.name)) \
                    if launcher != 'none' else _latest_log(run.work_dir)
                error = ''.join(traceback.format_exception_only(type(e), e)).strip()
                _write_json(osp.join(run.work_dir, FAILED_RECORD),
                            dict(step=step.name, error=error, log=step_log,
                                 traceback=traceback.format_exc()))
                log(f'[reproduce] {run.label}: {step.name} FAILED: {error.splitlines()[-1]} '
                    f'(log: {step_log})')
                break
        else:
            if osp.isfile(osp.join(run.work_dir, FAILED_RECORD)):
                os.remove(osp.join(run.work_dir, FAILED_RECORD))
        states[run.work_dir] = run_state(run)
    return states


def describe(runs: Sequence[Run], *, launcher: str = 'none', gpus: int = 1,
             partition: Optional[str] = None) -> str:
    """The plan as text: a summary line, then per run its state and the commands that would
    bring it to done (``--dry-run``)."""
    check_launcher(launcher, gpus, partition)
    lines, counts = [], {}
    for run in runs:
        state = run_state(run)
        counts[state.state] = counts.get(state.state, 0) + 1
        what = ('selection: train, validate every epoch' if run.stage == 'select' else
                'final: train on ' + _final_split(run) + ', test ' + ' + '.join(run.tests))
        lines.append(f'# {run.label} ({what}): {state.state}'
                     + (f' (log: {state.log})' if state.state in (FAILED, INCOMPLETE)
                        and state.log else ''))
        if run.after is not None:
            lines.append(f'#   after {run.after}')
        lines += [s.shell() for s in steps(run, state, launcher=launcher, gpus=gpus,
                                           partition=partition)]
    pairs = len({(r.config, r.seed) for r in runs})
    tasks = len({r.task for r in runs})
    head = (f'# {runs[0].table}: {tasks} tasks x {len({r.method for r in runs})} methods x '
            f'{len({r.pretrain for r in runs})} pre-trainings x {len({r.seed for r in runs})} '
            f'seeds = {pairs} (config, seed) pairs, {len(runs)} runs; '
            + ', '.join(f'{n} {s}' for s, n in sorted(counts.items())))
    return '\n'.join([head, *lines])


def _final_split(run: Run) -> str:
    if run.table == 'vtab1k':
        return 'train800val200'
    if run.table == 'fgvc':
        return 'train+val'
    return 'train'


# ---- the table -------------------------------------------------------------------------------
def load_paper_results(path: str = PAPER_RESULTS) -> dict:
    """The paper's numbers: ``dict(paper, tables, methods, results)``; each result names its
    ``table``, ``benchmark``, ``pretrain``, ``method``, ``column`` and ``value``."""
    with open(path) as f:
        return json.load(f)


def _paper_benchmark(table: str) -> str:
    return 'pascal-context' if table.startswith('pascal-context') else table


def paper_value(paper: dict, table: str, pretrain: str, method: str,
                column: str) -> Optional[dict]:
    """The paper's entry for one cell, or ``None`` when the paper does not report it."""
    if column == 'params_m':
        benchmark = 'classification' if family(table) == 'cls' else 'segmentation'
    else:
        benchmark = _paper_benchmark(table)
    for r in paper['results']:
        if (r['benchmark'], r['pretrain'], r['method'], r['column']) == (
                benchmark, pretrain, method, column):
            return r
    return None


def table_columns(table: str) -> List[Tuple[str, str]]:
    """(column, kind) of a table: ``task``, ``group`` (a mean of tasks or groups) or
    ``metric`` (segmentation single-/multi-scale)."""
    if table == 'vtab1k':
        return ([(t, 'task') for t in VTAB_TASKS] + [(g, 'group') for g in VTAB_GROUPS]
                + [('mean', 'group')])
    if table == 'fgvc':
        return [(t, 'task') for t in FGVC_DATASETS] + [('mean', 'group')]
    return [('ss', 'metric'), ('ms', 'metric')]


def _group_tasks(table: str, column: str) -> List[str]:
    if table == 'vtab1k' and column in VTAB_GROUPS:
        return list(VTAB_GROUPS[column])
    return table_tasks(table)


COLUMN_NAMES = {'ss': 'single-scale mIoU', 'ms': 'multi-scale mIoU (--tta)',
                'params_m': 'tunable params (M)'}


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return 'n/a' if value is None or math.isnan(value) else f'{value:.{digits}f}'


def _stat(values: Dict[int, float], expected: int) -> dict:
    if not values:
        return dict(mean=None, std=None, n=0, expected=expected, per_seed={})
    mean, std = mean_std(list(values.values()))
    return dict(mean=mean, std=None if math.isnan(std) else std, n=len(values),
                expected=expected, per_seed={str(s): v for s, v in sorted(values.items())})


def collect(runs: Sequence[Run], *, paper_path: str = PAPER_RESULTS,
            count_params: bool = True) -> dict:
    """The results of a plan beside the paper's numbers.

    Per (pre-training, method) and column: ours as mean ± std over the seeds whose runs are
    done (a group mean per seed needs every task of the group done for that seed), the paper's
    value and the difference; every run of the cell that is not done is listed in its
    ``issues`` with its state and log. Tunable parameters are counted on the meta device from
    the final runs' merged configs (classification: the mean over the planned tasks).

    Returns:
        ``dict(table, protocol, seeds, cells, runs, paper)``; :func:`format_markdown` and
        :func:`format_csv` write it out.
    """
    if not runs:
        raise ValueError('nothing planned')
    table = runs[0].table
    paper = load_paper_results(paper_path)
    seeds = sorted({r.seed for r in runs})
    states = {r.work_dir: run_state(r) for r in runs}
    for r in runs:  # a final run whose selection run did not finish is blocked
        if r.after is not None and states[r.work_dir].state == NOT_RUN and \
                states[r.after].state != DONE:
            states[r.work_dir] = RunState(BLOCKED)
    by_key = {(r.pretrain, r.method, r.task, r.seed, r.stage): r for r in runs}
    planned_tasks = list(dict.fromkeys(r.task for r in runs))
    configs = _Configs() if count_params else None
    cells = []
    for pretrain, method in dict.fromkeys((r.pretrain, r.method) for r in runs):
        row = _Row(pretrain, method, seeds, by_key, states)
        for column, kind in table_columns(table):
            if kind == 'task' and column not in planned_tasks:
                continue
            tasks = [column] if kind == 'task' else \
                [table] if kind == 'metric' else _group_tasks(table, column)
            mode = 'tta' if column == 'ms' else 'ss'
            per_seed = {}
            for s in seeds:
                if table == 'vtab1k' and column == 'mean':
                    groups = [[row.value(t, s) for t in VTAB_GROUPS[g]] for g in VTAB_GROUPS]
                    v = None if any(x is None for g in groups for x in g) else \
                        sum(sum(g) / len(g) for g in groups) / len(groups)
                else:
                    vals = [row.value(t, s, mode) for t in tasks]
                    v = None if any(x is None for x in vals) else sum(vals) / len(vals)
                if v is not None:
                    per_seed[s] = v
            partial = any(row.value(t, s, mode) is not None for t in tasks for s in seeds)
            cells.append(_cell(paper, table, pretrain, method, column, kind,
                               _stat(per_seed, len(seeds)), row.issues(tasks), partial))
        params = []
        if configs is not None:
            from mmdavpt.utils.params import count_config_tunable
            finals = {r.config: r for r in runs
                      if (r.pretrain, r.method, r.stage) == (pretrain, method, 'final')}
            for r in finals.values():  # one count per task
                cfg = configs.merged(r.config, r.cfg_options)
                params.append(count_config_tunable(cfg.model, scope=r.scope))
        stat = dict(mean=sum(params) / len(params) / 1e6 if params else None, std=None,
                    n=len(params), expected=len(params), per_seed={})
        cells.append(_cell(paper, table, pretrain, method, 'params_m', 'params', stat, [],
                           bool(params)))
    run_rows = [dict(run_record(r), state=states[r.work_dir].state,
                     metrics=states[r.work_dir].metrics, log=states[r.work_dir].log,
                     error=states[r.work_dir].error) for r in runs]
    return dict(table=table, protocol=protocol_text(table), seeds=seeds, cells=cells,
                runs=run_rows, paper=dict(source=paper['paper'],
                                          transcribed_from=paper['transcribed_from'],
                                          tables=paper['tables']))


class _Row:
    """The runs of one (pre-training, method) of a table: their values and what is not done."""

    def __init__(self, pretrain: str, method: str, seeds: Sequence[int], by_key: dict,
                 states: Dict[str, RunState]) -> None:
        self.pretrain, self.method, self.seeds = pretrain, method, seeds
        self.by_key, self.states = by_key, states

    def _run(self, task: str, seed: int, stage: str) -> Optional[Run]:
        return self.by_key.get((self.pretrain, self.method, task, seed, stage))

    def value(self, task: str, seed: int, mode: str = 'ss') -> Optional[float]:
        """The test value of a done final run, else ``None``."""
        run = self._run(task, seed, 'final')
        state = self.states[run.work_dir] if run else None
        return state.metrics.get(mode) if state and state.state == DONE else None

    def issues(self, tasks: Sequence[str]) -> List[dict]:
        """Each run of ``tasks`` that is not done: task, seed, stage, state, log."""
        out = []
        for task in tasks:
            for seed in self.seeds:
                for stage in ('select', 'final'):
                    run = self._run(task, seed, stage)
                    if run is None and stage == 'final':
                        out.append(dict(task=task, seed=seed, stage=stage, state=NOT_PLANNED,
                                        log=None))
                    elif run is not None and self.states[run.work_dir].state != DONE:
                        state = self.states[run.work_dir]
                        out.append(dict(task=task, seed=seed, stage=stage, state=state.state,
                                        log=state.log))
        return out


def _cell(paper: dict, table: str, pretrain: str, method: str, column: str, kind: str,
          stat: dict, issues: List[dict], partial: bool) -> dict:
    entry = paper_value(paper, table, pretrain, method, column)
    ours = stat['mean']
    return dict(pretrain=pretrain, method=method, column=column, kind=kind, ours=stat,
                paper=None if entry is None else entry['value'],
                paper_table=None if entry is None else entry['table'],
                diff=None if entry is None or ours is None else ours - entry['value'],
                issues=issues, partial=partial)


def protocol_text(table: str) -> str:
    """The protocol of a table, one paragraph (the table's header)."""
    if table == 'vtab1k':
        return ('VTAB-1k: per (config, seed) a selection run (train800, val200 every epoch) and '
                'then the final run on train800val200 for the full schedule, the last '
                'checkpoint tested once on test; test top-1 %. The paper reports group means '
                'only: Natural, Specialized, Structured and their mean are compared.')
    if table == 'fgvc':
        return ('FGVC: per (config, seed) a selection run (train.json, val.json every epoch) and '
                'then the final run on train.json + val.json for the full schedule, the last '
                'checkpoint tested once on test.json; test top-1 %.')
    note = (' The paper does not say whether its PASCAL Context numbers count 59 or 60 classes; '
            'both tables are set beside the same numbers.' if table.startswith('pascal') else '')
    return (f'{table}: SETR-PUP ViT-L, one run per (config, seed) for the full schedule without '
            'validation, the last checkpoint tested once single-scale and once with --tta '
            '(multi-scale + flip); mIoU %.' + note)


def _ours_text(cell: dict) -> str:
    """Ours: mean ± std (and how many seeds when not all), or why there is no number:
    ``failed`` (a run of the cell failed), ``incomplete`` (some of its runs are done or
    started), ``not planned (--tasks)``, ``not run``."""
    stat = cell['ours']
    if cell['kind'] == 'params':
        return 'n/a' if stat['mean'] is None else _fmt(stat['mean'], 3)
    if stat['n'] == 0:
        states = {i['state'] for i in cell['issues']}
        if FAILED in states:
            return 'failed'
        if cell['partial']:
            return 'incomplete'
        if states == {NOT_PLANNED}:
            return NOT_PLANNED
        return 'not run' if states <= {NOT_RUN, BLOCKED, NOT_PLANNED} else 'incomplete'
    text = _fmt(stat['mean'])
    if stat['std'] is not None:
        text += f' ± {_fmt(stat["std"])}'
    if stat['n'] < stat['expected']:
        text += f' ({stat["n"]} of {stat["expected"]} seeds)'
    return text


def _paper_text(cell: dict) -> str:
    return 'not reported' if cell['paper'] is None else _fmt(cell['paper'], 2)


def _diff_text(cell: dict) -> str:
    if cell['diff'] is None:
        return '-'
    return f'{cell["diff"]:+.3f}' if cell['kind'] == 'params' else f'{cell["diff"]:+.2f}'


def _column_name(column: str, table: str) -> str:
    if column == 'mean':
        return 'mean of the groups' if table == 'vtab1k' else 'mean of the datasets'
    return COLUMN_NAMES.get(column, column.capitalize() if column in VTAB_GROUPS else column)


def format_markdown(result: dict) -> str:
    """The table in Markdown: the compared cells (groups, segmentation metrics, parameters),
    then every task, then the runs that are not done with their logs."""
    table = result['table']
    seeds = ', '.join(str(s) for s in result['seeds'])
    out = [f'# {table}: ours (mean ± std over seeds {seeds}) and the paper', '',
           result['protocol'], '',
           f'Paper: {result["paper"]["source"]}; numbers from '
           f'{result["paper"]["transcribed_from"]}.', '']
    header = ['Pre-training', 'Method', 'Column', 'Ours', 'Paper', 'Ours - paper', 'Paper table']
    main = [c for c in result['cells'] if c['kind'] != 'task']
    out.append(format_table(header, [
        [c['pretrain'], c['method'], _column_name(c['column'], table), _ours_text(c),
         _paper_text(c), _diff_text(c), c['paper_table'] or '-'] for c in main]))
    tasks = [c for c in result['cells'] if c['kind'] == 'task']
    if tasks:
        selection = _selection_by_task(result['runs'])
        out += ['', '## Per task (test top-1 %)', '']
        out.append(format_table(
            ['Pre-training', 'Method', 'Task', 'Ours', 'Per seed', 'Selection: best val '
             '(epoch)', 'Paper', 'Ours - paper'],
            [[c['pretrain'], c['method'], c['column'], _ours_text(c),
              ' '.join(f'{s}:{_fmt(v)}' for s, v in c['ours']['per_seed'].items()) or '-',
              selection.get((c['pretrain'], c['method'], c['column']), '-'),
              _paper_text(c), _diff_text(c)] for c in tasks]))
    pending = [r for r in result['runs'] if r['state'] != DONE]
    if pending:
        out += ['', '## Runs not done', '']
        out.append(format_table(
            ['Run', 'State', 'Log', 'Error'],
            [[f'{osp.splitext(osp.basename(r["config"]))[0]} seed {r["seed"]} {r["stage"]}',
              r['state'], r['log'] or '-', (r['error'] or '-').splitlines()[-1]]
             for r in pending]))
    return '\n'.join(out) + '\n'


def _selection_by_task(run_rows: Sequence[dict]) -> Dict[tuple, str]:
    found: Dict[tuple, List[str]] = {}
    for r in run_rows:
        if r['stage'] == 'select' and r['state'] == DONE and 'val' in r['metrics']:
            found.setdefault((r['pretrain'], r['method'], r['task']), []).append(
                f'{r["seed"]}:{_fmt(r["metrics"]["val"])} ({r["metrics"]["val_epoch"]})')
    return {k: ' '.join(v) for k, v in found.items()}


CSV_FIELDS = ('table', 'pretrain', 'method', 'column', 'kind', 'ours_mean', 'ours_std',
              'seeds_done', 'seeds_planned', 'per_seed', 'ours', 'paper', 'diff',
              'paper_table', 'issues')


def format_csv(result: dict) -> str:
    """One CSV row per cell (tasks, groups, metrics, parameters)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator='\n')
    writer.writeheader()
    for c in result['cells']:
        writer.writerow(dict(
            table=result['table'], pretrain=c['pretrain'], method=c['method'],
            column=c['column'], kind=c['kind'], ours_mean=_num(c['ours']['mean']),
            ours_std=_num(c['ours']['std']), seeds_done=c['ours']['n'],
            seeds_planned=c['ours']['expected'],
            per_seed=' '.join(f'{s}:{v:.4f}' for s, v in c['ours']['per_seed'].items()),
            ours=_ours_text(c), paper=_num(c['paper']), diff=_num(c['diff']),
            paper_table=c['paper_table'] or '',
            issues='; '.join(issue_text(i) for i in c['issues'])))
    return buf.getvalue()


def issue_text(issue: dict) -> str:
    """``task seed S stage: state (log: path)``."""
    log = f' (log: {issue["log"]})' if issue.get('log') else ''
    return f'{issue["task"]} seed {issue["seed"]} {issue["stage"]}: {issue["state"]}{log}'


def _num(value: Optional[float]) -> str:
    return '' if value is None else f'{value:.4f}'


def write_results(result: dict, out_dir: str) -> Dict[str, str]:
    """Write ``results.md``, ``results.csv`` and ``results.json`` into ``out_dir``; returns
    their paths by format."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {fmt: osp.join(out_dir, f'results.{fmt}') for fmt in ('md', 'csv', 'json')}
    with open(paths['md'], 'w') as f:
        f.write(format_markdown(result))
    with open(paths['csv'], 'w') as f:
        f.write(format_csv(result))
    _write_json(paths['json'], result)
    return paths


def results_dir(work_root: str, table: str) -> str:
    return osp.join(work_root, table)
