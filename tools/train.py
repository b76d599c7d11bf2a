"""Train with an MMPretrain or MMSeg config, with mmdavpt's modules registered.

Mirrors ``tools/train.py`` of MMPretrain 1.2.0 and MMSeg 1.2.2; the config's ``default_scope``
('mmpretrain' or 'mmseg') picks the upstream behaviour where the two differ.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT|auto]] [--amp]
                          [--no-validate] [--auto-scale-lr] [--cfg-options k=v ...]

``--resume`` alone continues the latest checkpoint of the work dir and fails if there is none
(upstream's tools then silently start from scratch; ask for that with ``--resume auto``).
"""
import argparse
from typing import List, Optional

from mmengine.config import Config

import mmdavpt  # noqa: F401  registers mmdavpt's modules and the torch.load allowlist
from mmdavpt.utils.cli import (
    LATEST,
    add_common_args,
    merge_train_args,
    parse_common_args,
    run_train,
)
from mmdavpt.utils.config import load_config


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
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
        'from those of the run that saved the checkpoint (ConfigGuardHook), or if the work '
        "dir holds another config's checkpoints")
    parser.add_argument(
        '--amp', action='store_true',
        help='automatic mixed precision: float16 with loss scaling on GPU, bfloat16 on CPU')
    parser.add_argument(
        '--no-validate', action='store_true',
        help='no validation during training (val_cfg, val_dataloader and val_evaluator set to '
        'None, as MMPretrain\'s tools/train.py)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the learning rate by the actual total batch size (GPUs x batch per GPU) '
        'over auto_scale_lr.base_batch_size of the config')
    add_common_args(parser, example='train_cfg.max_iters=100')
    return parse_common_args(parser, argv)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to the config (CLI > config > defaults)."""
    return merge_train_args(cfg, work_dir=args.work_dir, cfg_options=args.cfg_options,
                            launcher=args.launcher, amp=args.amp, resume=args.resume,
                            allow_config_change=args.allow_config_change,
                            no_validate=args.no_validate, auto_scale_lr=args.auto_scale_lr)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    cfg = merge_args(load_config(args.config), args)
    run_train(cfg, resume=args.resume, allow_config_change=args.allow_config_change)


if __name__ == '__main__':
    main()
