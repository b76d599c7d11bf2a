"""Test (and evaluate) a checkpoint with an MMPretrain or MMSeg config, mmdavpt registered.

Mirrors ``tools/test.py`` of MMPretrain 1.2.0 and MMSeg 1.2.2; the config's ``default_scope``
('mmpretrain' or 'mmseg') picks the upstream behaviour where the two differ (``--out``, ``--tta``
defaults, dataloader defaults).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PATH] [--out-item ITEM]
                         [--tta] [--show] [--show-dir DIR] [--wait-time S] [--interval N]
                         [--allow-config-change]

A checkpoint trained on other classes than the test data's is refused (``ConfigGuardHook``).
"""
import argparse
from typing import List, Optional

from mmengine.config import Config

import mmdavpt  # noqa: F401  registers mmdavpt's modules and the torch.load allowlist
from mmdavpt.utils.cli import (
    OUT_ITEMS,
    add_common_args,
    merge_test_args,
    parse_common_args,
    run_test,
)
from mmdavpt.utils.config import load_config


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics (json)')
    parser.add_argument(
        '--out',
        help='mmseg: directory for the predicted masks (offline evaluation); '
        'mmpretrain: pickle file for the predictions (or the metrics, --out-item metrics)')
    parser.add_argument(
        '--out-item', choices=OUT_ITEMS,
        help='mmpretrain: what --out holds, the predictions (default) or the metrics')
    parser.add_argument(
        '--tta', action='store_true',
        help='test-time augmentation with cfg.tta_model and cfg.tta_pipeline (mmpretrain '
        'configs without them get flip TTA averaging the class scores)')
    parser.add_argument(
        '--show-dir',
        help='directory for the painted predictions: mmseg: the ground truth and the predicted '
        'mask painted over each image, side by side, under DIR/vis_data/vis_image/; '
        'mmpretrain: each input with its predicted class')
    parser.add_argument(
        '--show', action='store_true', help='show the painted predictions in a window')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds each window is shown (--show)')
    parser.add_argument(
        '--interval', type=int,
        help='paint every N-th test image (default: mmpretrain 1; mmseg the config\'s '
        'visualization hook, 50 in MMSeg\'s runtime)')
    parser.add_argument(
        '--allow-config-change', action='store_true',
        help="test even if the checkpoint's classes (meta dataset_meta) differ from the test "
        "data's (ConfigGuardHook): the same classes under other names")
    add_common_args(parser, example='test_dataloader.batch_size=1')
    return parse_common_args(parser, argv)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to the config (CLI > config > defaults)."""
    return merge_test_args(cfg, args.checkpoint, work_dir=args.work_dir,
                           cfg_options=args.cfg_options, launcher=args.launcher, tta=args.tta,
                           out=args.out, show=args.show, show_dir=args.show_dir,
                           wait_time=args.wait_time, interval=args.interval,
                           allow_config_change=args.allow_config_change)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    cfg = merge_args(load_config(args.config), args)
    run_test(cfg, out=args.out, out_item=args.out_item)


if __name__ == '__main__':
    main()
