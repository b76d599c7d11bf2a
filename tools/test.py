"""Test (and evaluate) a checkpoint with an MMPretrain or MMSeg config, mmdavpt registered.

Mirrors ``tools/test.py`` of MMPretrain 1.2.0 and MMSeg 1.2.2; the config's ``default_scope``
('mmpretrain' or 'mmseg') picks the upstream behaviour where the two differ (``--out``, ``--tta``
defaults, dataloader defaults).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PATH] [--tta]
"""
import argparse
from copy import deepcopy

import torch
from mmengine.config import Config, ConfigDict
from mmengine.evaluator import DumpResults

import mmdavpt  # noqa: F401  registers mmdavpt's modules and the torch.load allowlist
from mmdavpt.datasets.checks import check_datasets_not_empty
from mmdavpt.utils.cli import (
    RUNTIME_HOOKS,
    add_common_args,
    apply_common_args,
    build_runner,
    ensure_hooks,
    parse_common_args,
)


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
    add_common_args(parser, example='test_dataloader.batch_size=1')
    return parse_common_args(parser)


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


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to the config (CLI > config > defaults)."""
    scope = apply_common_args(cfg, work_dir=args.work_dir, cfg_options=args.cfg_options,
                              launcher=args.launcher)
    cfg.load_from = args.checkpoint
    # refuse a checkpoint whose state dict does not match the model (MMEngine only warns)
    ensure_hooks(cfg, [dict(type=RUNTIME_HOOKS['config_guard'])])

    if args.tta:
        if scope == 'mmpretrain':
            set_mmpretrain_tta_defaults(cfg)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model

    if scope == 'mmseg' and args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    if scope == 'mmpretrain':
        loader = ConfigDict(pin_memory=torch.cuda.is_available(),
                            collate_fn=dict(type='default_collate'))
        loader.update(cfg.test_dataloader)
        cfg.test_dataloader = loader
    return cfg


def main() -> None:
    args = parse_args()
    cfg = merge_args(Config.fromfile(args.config), args)
    runner = build_runner(cfg)
    check_datasets_not_empty(cfg, ('test_dataloader', ))
    if cfg.default_scope == 'mmpretrain' and args.out is not None:
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    main()
