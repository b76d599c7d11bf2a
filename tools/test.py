"""Test (and evaluate) a checkpoint with an MMPretrain or MMSeg config, mmdavpt registered.

Mirrors ``tools/test.py`` of MMPretrain 1.2.0 and MMSeg 1.2.2; the config's ``default_scope``
('mmpretrain' or 'mmseg') picks the upstream behaviour where the two differ (``--out``, ``--tta``
defaults, dataloader defaults).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PATH] [--tta]
                         [--allow-config-change]

A checkpoint trained on other classes than the test data's is refused (``ConfigGuardHook``).
"""
import argparse

from mmengine.config import Config

import mmdavpt  # noqa: F401  registers mmdavpt's modules and the torch.load allowlist
from mmdavpt.utils.cli import add_common_args, merge_test_args, parse_common_args, run_test


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics (json)')
    parser.add_argument(
        '--out',
        help='mmseg: directory for the predicted masks (offline evaluation); '
        'mmpretrain: pickle file for the predictions')
    parser.add_argument(
        '--tta', action='store_true',
        help='test-time augmentation with cfg.tta_model and cfg.tta_pipeline (mmpretrain '
        'configs without them get flip TTA averaging the class scores)')
    parser.add_argument(
        '--allow-config-change', action='store_true',
        help="test even if the checkpoint's classes (meta dataset_meta) differ from the test "
        "data's (ConfigGuardHook): the same classes under other names")
    add_common_args(parser, example='test_dataloader.batch_size=1')
    return parse_common_args(parser)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to the config (CLI > config > defaults)."""
    return merge_test_args(cfg, args.checkpoint, work_dir=args.work_dir,
                           cfg_options=args.cfg_options, launcher=args.launcher, tta=args.tta,
                           out=args.out, allow_config_change=args.allow_config_change)


def main() -> None:
    args = parse_args()
    cfg = merge_args(Config.fromfile(args.config), args)
    run_test(cfg, out=args.out)


if __name__ == '__main__':
    main()
