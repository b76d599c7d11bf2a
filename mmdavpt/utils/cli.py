"""What ``tools/train.py``, ``tools/test.py`` and ``tools/search.py`` share when they turn a
command line into a config and a runner, and then train or test (MMPretrain's and MMSeg's tools,
merged). :func:`run_train` and :func:`run_test` are the two tools after their command line:
:mod:`mmdavpt_lab.run` does exactly what they do, in one process.

Two process-wide settings are asked for here, not made by importing the package
(docs/architecture.md, "Import-time changes"): :func:`build_runner` makes MMEngine's loader of
local checkpoints say when a file is not a checkpoint, and :func:`parse_common_args` silences
setuptools' ``pkg_resources`` deprecation warning, which mmengine triggers on every config read.
"""
import argparse
import importlib
import logging
import os
import os.path as osp
import warnings
from copy import deepcopy
from typing import Dict, Optional, Sequence

import mmengine
import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.evaluator import DumpResults
from mmengine.logging import print_log
from mmengine.runner import Runner, find_latest_checkpoint

from mmdavpt.datasets.checks import check_datasets_not_empty
from mmdavpt.utils.compat import register_checkpoint_loader
from mmdavpt.utils.config_diff import check_work_dir_settings
from mmdavpt.utils.dependencies import require_mmseg
from mmdavpt.utils.workdir import check_work_dir_owner, run_name

SCOPES = ('mmpretrain', 'mmseg')
#: The hooks every mmdavpt run has: ``default_hooks`` entries of the runtime bases
#: (configs/_base_/default_runtime_cls.py, configs/segmentation/_base_/); ``--resume`` refuses a
#: checkpoint of another config and continues the random draws of the interrupted run.
RUNTIME_HOOKS = {'config_guard': 'ConfigGuardHook', 'rng_state': 'RNGStateHook'}


def add_common_args(parser: argparse.ArgumentParser, *, example: str) -> None:
    """``--cfg-options`` (``example``: a key=value pair for its help), ``--launcher`` and the
    ``--local-rank`` that torch.distributed launchers pass."""
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help=f'override settings of the config, key=value pairs such as {example} or '
        'key="[a,b]"')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
        help='job launcher')
    # torch.distributed launchers pass --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


#: The start of setuptools' warning (setuptools < 81, pinned for mmengine 0.10.7) that
#: ``pkg_resources`` is deprecated. mmengine re-imports ``pkg_resources`` whenever a config names
#: an ``mmpretrain::`` or ``mmseg::`` base, so a tool would print it at every config read, and
#: nothing a user does can act on it.
PKG_RESOURCES_WARNING = 'pkg_resources is deprecated as an API'


def ignore_pkg_resources_warning() -> None:
    """Ignore :data:`PKG_RESOURCES_WARNING` (only that warning) in this process."""
    warnings.filterwarnings('ignore', message=PKG_RESOURCES_WARNING, category=UserWarning)


def parse_common_args(parser: argparse.ArgumentParser,
                      argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line; ``LOCAL_RANK`` defaults to ``--local-rank``. Called by a tool
    before it reads its config: :func:`ignore_pkg_resources_warning`."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    ignore_pkg_resources_warning()
    return args


def apply_common_args(cfg: Config, *, work_dir: Optional[str] = None,
                      cfg_options: Optional[dict] = None, launcher: str = 'none') -> str:
    """``--cfg-options``, ``--launcher`` and ``--work-dir`` (CLI > config >
    ``work_dirs/<config name>``); returns the config's ``default_scope``, which must be one of
    :data:`SCOPES`."""
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(f'default_scope must be one of {SCOPES}, got {scope!r}')
    if scope == 'mmseg':
        require_mmseg(f'the segmentation config {cfg.filename}')
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        if not cfg.filename:
            raise ValueError('a config not read from a file needs a work_dir')
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(cfg.filename))[0])
    return scope


def ensure_hooks(cfg: Config, hooks: Sequence[dict]) -> None:
    """Make sure the run has each hook: one of its type listed in ``cfg.default_hooks`` or
    ``cfg.custom_hooks`` gets the keys given besides ``type``; a missing one is added to
    ``cfg.custom_hooks``, with an INFO log (configs that do not inherit mmdavpt's runtime bases,
    e.g. those composed from upstream's bases only)."""
    custom = list(cfg.get('custom_hooks') or [])
    listed_hooks = [h for h in (cfg.get('default_hooks') or {}).values() if h] + custom
    for hook in hooks:
        listed = [h for h in listed_hooks if h.get('type') == hook['type']]
        for h in listed:
            h.update({k: v for k, v in hook.items() if k != 'type'})
        if not listed:
            print_log(f"{hook['type']} added to custom_hooks: the config does not list it "
                      "(mmdavpt's runtime bases have it in default_hooks)", logger='current',
                      level=logging.INFO)
            custom.append(dict(hook))
    cfg.custom_hooks = custom


def enable_amp(cfg: Config) -> None:
    """Switch ``cfg.optim_wrapper`` to mixed precision for the available device."""
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper in ('AmpOptimWrapper', 'CPUAmpOptimWrapper'):
        print_log('AMP training is already enabled in your config.', logger='current',
                  level=logging.WARNING)
        return
    assert wrapper == 'OptimWrapper', (
        f'--amp needs optim_wrapper.type OptimWrapper, but the config has {wrapper}')
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    else:  # mmengine's AmpOptimWrapper refuses CPU; see mmdavpt.utils.compat
        cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'


def set_mmpretrain_dataloader_defaults(cfg: Config) -> None:
    """MMPretrain's tools fill these in; its configs rely on ``default_collate``. Pinned memory
    only with CUDA and persistent workers only with workers (both are errors/warnings otherwise)."""
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(field) is None:
            continue
        loader = ConfigDict(pin_memory=torch.cuda.is_available(),
                            collate_fn=dict(type='default_collate'),
                            persistent_workers=cfg[field].get('num_workers', 0) > 0)
        loader.update(cfg[field])
        cfg[field] = loader


#: ``--resume`` without a value: the latest checkpoint of the work dir, an error if there is none.
LATEST = 'latest'


def resume_checkpoint(resume: str, work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` names: ``cfg.load_from`` for ``resume=True``.

    ``'auto'`` -> None (MMEngine then resumes from the latest checkpoint of ``work_dir`` if there
    is one, else trains from scratch); :data:`LATEST` -> the latest checkpoint of ``work_dir``;
    anything else is a checkpoint path or URL (MMEngine names it if it does not exist).

    Raises:
        FileNotFoundError: :data:`LATEST` and ``work_dir`` has no checkpoint.
    """
    if resume == 'auto':
        return None
    if resume == LATEST:
        latest = find_latest_checkpoint(work_dir)
        if latest is None:
            raise FileNotFoundError(
                f'--resume: the work dir {work_dir} has no checkpoint to resume from (no '
                f'last_checkpoint file there). Pass the work dir of the run to continue '
                f'(--work-dir), a checkpoint (--resume CKPT), "--resume auto" to train from '
                f'scratch when there is none, or drop --resume.')
        return latest
    return resume


def disable_validation(cfg: Config) -> None:
    """``--no-validate`` (MMPretrain's): no validation loop during training. A checkpoint hook
    that keeps only the best-val checkpoint would then save nothing: that is logged."""
    cfg.val_cfg = None
    cfg.val_dataloader = None
    cfg.val_evaluator = None
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    if checkpoint.get('save_best') and checkpoint.get('interval', -1) <= 0 and \
            not checkpoint.get('save_last', True):
        print_log('--no-validate: this config keeps only the best-val checkpoint (save_best), '
                  'so no checkpoint will be saved; set default_hooks.checkpoint.interval or '
                  'save_last=True with --cfg-options', logger='current', level=logging.WARNING)


def enable_auto_scale_lr(cfg: Config) -> None:
    """``--auto-scale-lr``: scale the learning rate by (GPUs x batch per GPU) /
    ``auto_scale_lr.base_batch_size`` (MMEngine's ``Runner.scale_lr``).

    Raises:
        KeyError: the config has no ``auto_scale_lr.base_batch_size``, the total batch size its
            learning rate was set for.
    """
    if not (cfg.get('auto_scale_lr') or {}).get('base_batch_size'):
        raise KeyError(
            '--auto-scale-lr: the config has no auto_scale_lr.base_batch_size (the total batch '
            'size, GPUs x batch per GPU, that its learning rate was set for); add it, e.g. '
            '--cfg-options auto_scale_lr.base_batch_size=16')
    cfg.auto_scale_lr.enable = True


def merge_train_args(cfg: Config, *, work_dir: Optional[str] = None,
                     cfg_options: Optional[dict] = None, launcher: str = 'none',
                     amp: bool = False, resume: Optional[str] = None,
                     allow_config_change: bool = False, no_validate: bool = False,
                     auto_scale_lr: bool = False) -> Config:
    """Apply the options of ``tools/train.py`` to a config (CLI > config > defaults).

    Args:
        cfg: the config, changed in place and returned.
        work_dir, cfg_options, launcher: see :func:`apply_common_args`.
        amp: mixed precision (:func:`enable_amp`).
        resume: :data:`LATEST`, ``'auto'`` or a checkpoint path (:func:`resume_checkpoint`).
        allow_config_change: ``ConfigGuardHook(allow_config_change=True)``.
        no_validate: no validation during training (:func:`disable_validation`).
        auto_scale_lr: scale the learning rate to the batch size (:func:`enable_auto_scale_lr`).
    """
    scope = apply_common_args(cfg, work_dir=work_dir, cfg_options=cfg_options, launcher=launcher)
    if no_validate:
        disable_validation(cfg)
    if auto_scale_lr:
        enable_auto_scale_lr(cfg)
    if amp:
        enable_amp(cfg)
    if resume is not None:
        cfg.resume = True
        cfg.load_from = resume_checkpoint(resume, cfg.work_dir)
    if scope == 'mmpretrain':
        set_mmpretrain_dataloader_defaults(cfg)
    guard = dict(type=RUNTIME_HOOKS['config_guard'])
    if allow_config_change:
        guard['allow_config_change'] = True
    ensure_hooks(cfg, [guard, dict(type=RUNTIME_HOOKS['rng_state'])])
    return cfg


def build_runner(cfg: Config) -> Runner:
    """MMEngine's ``Runner``, or the scope's registered ``runner_type``.

    The runner loads ``load_from``, ``resume`` and ``init_cfg=dict(type='Pretrained')`` through
    MMEngine's ``CheckpointLoader``; its loader of local files is made
    :func:`~mmdavpt.utils.compat.load_from_local_checked` first
    (:func:`~mmdavpt.utils.compat.register_checkpoint_loader`), so that a file that is not a
    checkpoint is named as such.
    """
    register_checkpoint_loader()
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return importlib.import_module(f'{cfg.default_scope}.registry').RUNNERS.build(cfg)


def run_train(cfg: Config, *, resume: Optional[str] = None,
              allow_config_change: bool = False) -> Runner:
    """Train with a config merged by :func:`merge_train_args` (what ``tools/train.py`` does
    after its command line); returns the runner once its training ended.

    A work dir that holds another config's run is refused (its checkpoints would be
    overwritten) unless a resume explicitly allows a config change; so is, when not resuming, one
    that holds a run of the same config with other settings (``check_work_dir_settings``).
    """
    if not (cfg.get('resume') and allow_config_change):
        check_work_dir_owner(cfg.work_dir, name=run_name(cfg))
    if not cfg.get('resume'):
        check_work_dir_settings(cfg.work_dir, cfg)
    runner = build_runner(cfg)
    check_datasets_not_empty(cfg, ('train_dataloader', 'val_dataloader')
                             if cfg.get('val_cfg') else ('train_dataloader', ))
    if resume == 'auto' and find_latest_checkpoint(cfg.work_dir) is None:
        runner.logger.warning(f'--resume auto: no checkpoint in the work dir {cfg.work_dir}; '
                              f'training from scratch')
    runner.train()
    return runner


def set_mmpretrain_tta_defaults(cfg: Config) -> None:
    """MMPretrain's default TTA: average the class scores of the image and its flip."""
    if 'tta_model' not in cfg:
        cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
    if 'tta_pipeline' not in cfg:
        test_pipeline = cfg.test_dataloader.dataset.pipeline
        cfg.tta_pipeline = deepcopy(test_pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                        [test_pipeline[-1]]])


def enable_visualization(cfg: Config, scope: str, *, show: bool = False,
                         show_dir: Optional[str] = None, wait_time: float = 2.,
                         interval: Optional[int] = None) -> None:
    """``--show``, ``--show-dir``, ``--wait-time`` and ``--interval``: switch on the test run's
    ``default_hooks.visualization`` the way each upstream ``tools/test.py`` does.

    MMSeg (``SegVisualizationHook``): the ground truth and the prediction painted over the image,
    side by side, written under ``show_dir/vis_data/vis_image/`` (the visualizer's
    ``save_dir``); every ``interval``-th image (``None``: the hook's own, 50 in MMSeg's runtime).
    MMPretrain (``VisualizationHook``): the network input with its predicted class, written to
    ``show_dir``; every ``interval``-th image (``None``: 1, MMPretrain's default).

    Raises:
        KeyError: the config has no ``default_hooks.visualization``.
    """
    hook = (cfg.get('default_hooks') or {}).get('visualization')
    if not hook:
        raise KeyError('--show/--show-dir need a visualization hook in default_hooks, e.g. '
                       "visualization=dict(type='SegVisualizationHook') (MMSeg) or "
                       "dict(type='VisualizationHook') (MMPretrain)")
    if scope == 'mmseg':
        hook.draw = True
        if show:
            hook.show = True
            hook.wait_time = wait_time
        if show_dir is not None:
            cfg.visualizer.save_dir = show_dir
            # MMSeg's runtime names its visualizer 'visualizer'; MMEngine would hand this run an
            # earlier instance of that name (e.g. an MMSegInferencer's), which has no save_dir.
            # Unnamed, it is named after the run.
            cfg.visualizer.pop('name', None)
    else:
        hook.update(enable=True, show=show, wait_time=wait_time, out_dir=show_dir)
        interval = 1 if interval is None else interval
    if interval is not None:
        hook.interval = interval


def merge_test_args(cfg: Config, checkpoint: str, *, work_dir: Optional[str] = None,
                    cfg_options: Optional[dict] = None, launcher: str = 'none',
                    tta: bool = False, out: Optional[str] = None, show: bool = False,
                    show_dir: Optional[str] = None, wait_time: float = 2.,
                    interval: Optional[int] = None, allow_config_change: bool = False) -> Config:
    """Apply the options of ``tools/test.py`` to a config (CLI > config > defaults).

    Args:
        cfg: the config, changed in place and returned.
        checkpoint: the checkpoint to test (``cfg.load_from``); one whose state dict does not
            match the model is refused (``ConfigGuardHook``; MMEngine only warns).
        work_dir, cfg_options, launcher: see :func:`apply_common_args`.
        tta: test-time augmentation with ``cfg.tta_model`` and ``cfg.tta_pipeline``
            (MMPretrain configs without them: :func:`set_mmpretrain_tta_defaults`).
        out: MMSeg: the directory of the predicted masks (offline evaluation).
        show, show_dir, wait_time, interval: draw the predictions
            (:func:`enable_visualization`).
        allow_config_change: test a checkpoint trained on other classes than the test data's
            (``ConfigGuardHook(allow_config_change=True)``: a warning instead of an error).
    """
    scope = apply_common_args(cfg, work_dir=work_dir, cfg_options=cfg_options, launcher=launcher)
    cfg.load_from = checkpoint
    guard = dict(type=RUNTIME_HOOKS['config_guard'])
    if allow_config_change:
        guard['allow_config_change'] = True
    ensure_hooks(cfg, [guard])
    if show or show_dir is not None:
        enable_visualization(cfg, scope, show=show, show_dir=show_dir, wait_time=wait_time,
                             interval=interval)
    if tta:
        if scope == 'mmpretrain':
            set_mmpretrain_tta_defaults(cfg)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if scope == 'mmseg' and out is not None:
        cfg.test_evaluator['output_dir'] = out
        cfg.test_evaluator['keep_results'] = True
    if scope == 'mmpretrain':
        loader = ConfigDict(pin_memory=torch.cuda.is_available(),
                            collate_fn=dict(type='default_collate'))
        loader.update(cfg.test_dataloader)
        cfg.test_dataloader = loader
    return cfg


#: ``--out-item`` (MMPretrain's): what ``--out`` holds.
OUT_ITEMS = ('metrics', 'pred')


def run_test(cfg: Config, *, out: Optional[str] = None,
             out_item: Optional[str] = None) -> Dict[str, float]:
    """Test with a config merged by :func:`merge_test_args` (what ``tools/test.py`` does after
    its command line); returns the test metrics (also in the run's log dir).

    Args:
        out: MMPretrain: a pickle file for the predictions (replaced if it exists, a warning
            names it, as upstream's tool does), or for the metrics with ``out_item='metrics'``
            (MMSeg: see :func:`merge_test_args`).
        out_item: MMPretrain: ``'pred'`` (the default) or ``'metrics'`` (:data:`OUT_ITEMS`).

    Raises:
        ValueError: ``out_item`` without ``out``, not one of :data:`OUT_ITEMS`, or with an MMSeg
            config (whose ``out`` is a directory of masks).
    """
    if out_item is not None:
        if out is None:
            raise ValueError('--out-item needs --out, the file to write it to')
        if out_item not in OUT_ITEMS:
            raise ValueError(f'--out-item must be one of {OUT_ITEMS}, got {out_item!r}')
        if cfg.default_scope != 'mmpretrain':
            raise ValueError('--out-item is for MMPretrain configs; with an MMSeg config, --out '
                             'is the directory of the predicted masks')
    runner = build_runner(cfg)
    if out is not None and (osp.isfile(out) or osp.isdir(out) and os.listdir(out)):
        # upstream's tools/test.py replaces them too, without a word
        what = 'it with its predictions' if osp.isfile(out) else \
            'the files of the same names in it with its predicted masks'
        runner.logger.warning(f'--out {out} exists: this test replaces {what}')
    check_datasets_not_empty(cfg, ('test_dataloader', ))
    mmpretrain_out = cfg.default_scope == 'mmpretrain' and out is not None
    if mmpretrain_out and out_item in (None, 'pred'):
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=out))
    metrics = runner.test()
    if mmpretrain_out and out_item == 'metrics':
        mmengine.dump(metrics, out)
    return metrics
