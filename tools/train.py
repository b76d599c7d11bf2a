"""Train with an MMPretrain or MMSeg config, with mmdavpt's modules registered.

Mirrors ``tools/train.py`` of MMPretrain 1.2.0 and MMSeg 1.2.2; the config's ``default_scope``
('mmpretrain' or 'mmseg') picks the upstream behaviour where the two differ.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT|auto]] [--amp]
                          [--cfg-options k=v ...]

``--resume`` alone continues the latest checkpoint of the work dir and fails if there is none
(upstream's tools then silently start from scratch; ask for that with ``--resume auto``).
"""
import argparse
import logging
import os
from typing import Optional

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log
from mmengine.runner import find_latest_checkpoint

import mmdavpt  # noqa: F401  registers mmdavpt's modules and the torch.load allowlist
from mmdavpt.datasets.checks import check_datasets_not_empty
from mmdavpt.utils.cli import apply_common_args, build_runner, ensure_hooks

#: ``--resume`` without a value: the latest checkpoint of the work dir, an error if there is none.
LATEST = 'latest'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train an MMPretrain or MMSeg model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const=LATEST,
        help='resume from this checkpoint; without a value, from the latest checkpoint in the '
        'work dir, which must exist; "auto": from the latest checkpoint if there is one, else '
        'train from scratch (MMPretrain\'s and MMSeg\'s plain --resume)')
    parser.add_argument(
        '--allow-config-change', action='store_true',
        help='with --resume: resume even if the model or training data of the config differ '
        'from those of the run that saved the checkpoint (ConfigGuardHook)')
    parser.add_argument(
        '--amp', action='store_true',
        help='automatic mixed precision: float16 with loss scaling on GPU, bfloat16 on CPU')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value pairs such as '
        'train_cfg.max_iters=100 or key="[a,b]"')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
        help='job launcher')
    # torch.distributed launchers pass --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


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


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to the config (CLI > config > defaults)."""
    scope = apply_common_args(cfg, args)
    if args.amp:
        enable_amp(cfg)
    if args.resume is not None:
        cfg.resume = True
        cfg.load_from = resume_checkpoint(args.resume, cfg.work_dir)
    if scope == 'mmpretrain':
        set_mmpretrain_dataloader_defaults(cfg)
    # --resume refuses a checkpoint of another config and continues the random draws of the
    # interrupted run (docs/distributed.md)
    guard = dict(type='ConfigGuardHook')
    if args.allow_config_change:
        guard['allow_config_change'] = True
    ensure_hooks(cfg, [guard, dict(type='RNGStateHook')])
    return cfg


def main() -> None:
    args = parse_args()
    cfg = merge_args(Config.fromfile(args.config), args)
    runner = build_runner(cfg)
    check_datasets_not_empty(cfg, ('train_dataloader', 'val_dataloader')
                             if cfg.get('val_cfg') else ('train_dataloader', ))
    if args.resume == 'auto' and find_latest_checkpoint(cfg.work_dir) is None:
        runner.logger.warning(f'--resume auto: no checkpoint in the work dir {cfg.work_dir}; '
                              f'training from scratch')
    runner.train()


if __name__ == '__main__':
    main()
