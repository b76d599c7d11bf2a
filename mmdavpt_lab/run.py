"""One run of a comparison (:func:`mmdavpt_lab.compare.run_one`), in one process: train as
``tools/train.py`` does, test the selected checkpoint as ``tools/test.py`` does, and measure the
CLS -> prompt attention shares on val as ``tools/analysis/visualize_attention.py --split val``
does (each through the same package functions). One process instead of three saves two Python
starts and model builds per run; the results are the same.

    python -m mmdavpt_lab.run CONFIG --work-dir RUN_DIR [--train] [--amp]
        [--test ss [tta]] [--attention-layers L ...] [--cfg-options k=v ...]

Without ``--train`` the run's training must have finished before, with the same config,
options and ``--amp`` (its :data:`~mmdavpt_lab.compare.TRAINED_FILE` says so; its checkpoint is
tested). Writes that file once the training ended, the tests' metrics under
``RUN_DIR/test_{mode}`` and the attention shares under ``RUN_DIR/attention``.
"""
import argparse
import gc
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config

import mmdavpt  # noqa: F401  registers mmdavpt's modules and the torch.load allowlist
from mmdavpt.utils import workdir
from mmdavpt.utils.cli import merge_test_args, merge_train_args, run_test, run_train
from mmdavpt_lab import attention
from mmdavpt_lab.compare import (
    ATTENTION_DIR,
    TRAINED_FILE,
    merged_config,
    parse_cfg_options,
    trained_checkpoint,
    write_trained,
)

#: The test modes: ``tools/test.py`` without and with ``--tta``.
MODES = ('ss', 'tta')


def train(config: str, options: Sequence[str], run_dir: str, amp: bool = False) -> float:
    """``tools/train.py CONFIG --work-dir RUN_DIR [--amp] --cfg-options OPTIONS``; writes
    :data:`TRAINED_FILE` (:func:`~mmdavpt_lab.compare.write_trained`) and returns the
    training's wall time (s)."""
    cfg = merge_train_args(Config.fromfile(config), work_dir=run_dir,
                           cfg_options=parse_cfg_options(options), amp=amp)
    start = time.perf_counter()
    run_train(cfg)
    seconds = time.perf_counter() - start
    gc.collect()  # the training's runner and model are gone before the tests build theirs
    write_trained(run_dir, merged_config(config, options), amp, seconds, config, options)
    return seconds


def evaluate(config: str, options: Sequence[str], checkpoint: str, run_dir: str,
             mode: str = 'ss', amp: bool = False) -> Dict[str, float]:
    """``tools/test.py CONFIG CHECKPOINT --work-dir RUN_DIR/test_{mode} [--tta] --cfg-options
    OPTIONS [test_cfg.fp16=True]``; returns its metrics.

    The test runner gets its own experiment name: MMEngine shares the logger and the message
    hub of a name within a process, and the training's name (config name + second) can repeat.
    """
    if mode not in MODES:
        raise ValueError(f'test mode {mode!r} is not one of {MODES}')
    options = list(options) + (['test_cfg.fp16=True'] if amp else [])
    cfg = merge_test_args(Config.fromfile(config), checkpoint,
                          work_dir=osp.join(run_dir, f'test_{mode}'),
                          cfg_options=parse_cfg_options(options), tta=mode == 'tta')
    cfg.experiment_name = (f'{osp.splitext(osp.basename(config))[0]}_test_{mode}_'
                           f'{time.strftime("%Y%m%d_%H%M%S")}')
    return run_test(cfg)


def measure_attention(run_dir: str, checkpoint: str, layers: Sequence[int],
                     split: str = 'val') -> Dict[str, Dict[int, dict]]:
    """``tools/analysis/visualize_attention.py RUN_CONFIG CHECKPOINT --split val --layers
    LAYERS --out RUN_DIR/attention --device cpu`` (RUN_CONFIG: the config the training dumped in
    ``run_dir``); returns the mean shares per layer, also written to ``RUN_DIR/attention``."""
    cfg = Config.fromfile(workdir.find_config(run_dir))
    attention.setup_scope(cfg)
    model = attention.load_model(cfg, checkpoint, 'cpu')
    model.recorder = attention.AttentionRecorder(model.model.backbone, layers)
    means = attention.split_shares(cfg, [model], model.recorder.layers, split, 'cpu')
    print(attention.format_shares(model.name, means[model.name], model.guided_layers))
    attention.write_shares(osp.join(run_dir, ATTENTION_DIR), means)
    return means


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--work-dir', required=True, help='the run directory')
    parser.add_argument('--train', action='store_true', help='train first')
    parser.add_argument('--amp', action='store_true', help='mixed precision (train and test)')
    parser.add_argument('--test', nargs='*', choices=MODES, default=['ss'],
                        help='test modes of the selected checkpoint')
    parser.add_argument('--attention-layers', type=int, nargs='+',
                        help='measure the CLS attention shares on val at these layers')
    parser.add_argument('--cfg-options', nargs='*', default=[], metavar='k=v')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.train:
        train(args.config, args.cfg_options, args.work_dir, args.amp)
    checkpoint = trained_checkpoint(args.work_dir,
                                    merged_config(args.config, args.cfg_options), args.amp)
    if checkpoint is None:
        raise FileNotFoundError(f'{args.work_dir}: no finished training to test (its best-val '
                                f'or final checkpoint, and {TRAINED_FILE})')
    for mode in args.test:
        evaluate(args.config, args.cfg_options, checkpoint, args.work_dir, mode, args.amp)
    if args.attention_layers:
        measure_attention(args.work_dir, checkpoint, args.attention_layers)


if __name__ == '__main__':
    main()
