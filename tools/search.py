"""Hyperparameter search for a DA-VPT config with Optuna: beta, lam, lr, weight decay, M, ...

Each trial is a normal training run (the config handling of ``tools/train.py``, the MMEngine
Runner, the config's hooks) in ``{work_dir}/trial_{k}``; its value is the best validation
metric of the run. The test split is never touched. Bad trials are pruned at a validation.
With ``--storage`` the study is kept in a database and the same command resumes it.

    python tools/search.py CONFIG --trials 20 \\
        --space "beta=loguniform:0.01:1 lam=loguniform:0.01:1 lr=loguniform:1e-4:1e-2 \\
                 weight_decay=loguniform:1e-5:1e-2 num_guided_prompts=int:2:10" \\
        --storage sqlite:///work_dirs/search.db [--study-name NAME] [--work-dir DIR] \\
        [--trial-options train_cfg.max_epochs=20]

The best trial's config is written to ``{work_dir}/{study}_best.py`` and its path printed.
See docs/tools.md.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.utils import mkdir_or_exist

import mmdavpt  # noqa: F401  registers mmdavpt's modules and the torch.load allowlist
from mmdavpt.utils.cli import build_runner, merge_train_args
from mmdavpt_lab.search import ALIASES, parse_space, run_search, write_best_config


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Optuna hyperparameter search over training runs of a config',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='space entries: NAME=KIND:ARGS with NAME one of '
        f'{", ".join(sorted(ALIASES))} or a dotted config key; KIND uniform:LOW:HIGH, '
        'loguniform:LOW:HIGH, int:LOW:HIGH, intlog:LOW:HIGH or choice:A,B,...')
    parser.add_argument('config', help='training config file')
    parser.add_argument('--trials', type=int, required=True,
                        help='finished (complete or pruned) trials the study should have; a '
                        'resumed study runs only the missing ones')
    parser.add_argument('--space', nargs='+', required=True,
                        help='the search space, e.g. "beta=loguniform:0.01:1 lr=loguniform:'
                        '1e-4:1e-2 num_guided_prompts=int:2:10"')
    parser.add_argument('--storage',
                        help='Optuna storage URL, e.g. sqlite:///work_dirs/search.db (resumable); '
                        'default: in memory')
    parser.add_argument('--study-name', help='default: the config file name')
    parser.add_argument('--work-dir',
                        help='default: ./work_dirs/search_{study name}; trial k trains in '
                        '{work dir}/trial_k')
    parser.add_argument('--metric',
                        help="validation metric key; default: the config's save_best, else "
                        'accuracy/top1 (mmpretrain) or mIoU (mmseg)')
    parser.add_argument('--direction', choices=['maximize', 'minimize'], default='maximize')
    parser.add_argument('--pruner', default='median',
                        help="'median' (default; after 3 finished trials), "
                        "'median:STARTUP_TRIALS:WARMUP_STEPS', 'threshold:LOWER' or 'none'")
    parser.add_argument('--seed', type=int, default=0, help='seed of the TPE sampler')
    parser.add_argument('--heartbeat', type=int, default=60,
                        help='seconds between heartbeats of a running trial in the storage; a '
                        'trial whose process died is retried once by the next run; 0: none')
    parser.add_argument('--amp', action='store_true', help='mixed precision, as tools/train.py')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='config overrides for the trials and the best config')
    parser.add_argument('--trial-options', nargs='+', action=DictAction,
                        help='config overrides for the trials only, e.g. a shorter schedule '
                        '(train_cfg.max_epochs=20); the best config does not get them')
    args = parser.parse_args(argv)
    if args.storage is not None and '://' not in args.storage:
        parser.error(f'--storage {args.storage} is not a database URL: for a SQLite file write '
                     f'--storage sqlite:///{args.storage}')
    return args


def main(argv: Optional[List[str]] = None) -> Optional[str]:
    """Run the search; return the path of the best config (``None`` if no trial completed)."""
    args = parse_args(argv)
    params = parse_space(args.space)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    study_name = args.study_name or osp.splitext(osp.basename(args.config))[0]
    work_dir = args.work_dir or osp.join('./work_dirs', f'search_{study_name}')
    mkdir_or_exist(work_dir)
    if args.storage and args.storage.startswith('sqlite:///'):
        mkdir_or_exist(osp.dirname(osp.abspath(args.storage[len('sqlite:///'):])))

    def prepare(trial_cfg: Config) -> Config:
        # the same handling as `tools/train.py CONFIG --work-dir DIR [--amp]`
        return merge_train_args(trial_cfg, work_dir=trial_cfg.work_dir, amp=args.amp)

    study = run_search(cfg, params, args.trials, work_dir, storage=args.storage,
                       study_name=study_name, metric=args.metric, direction=args.direction,
                       pruner=args.pruner, seed=args.seed, heartbeat=args.heartbeat or None,
                       trial_options=args.trial_options, prepare=prepare,
                       build_runner=build_runner)
    states = [t.state.name for t in study.trials]
    summary = ', '.join(f'{states.count(s)} {s.lower()}' for s in sorted(set(states)))
    print(f'study {study.study_name!r}: {len(states)} trials ({summary})')
    if not any(s == 'COMPLETE' for s in states):
        print('no trial completed: no best config', file=sys.stderr)
        return None
    path = write_best_config(study, cfg, osp.join(work_dir, f'{study.study_name}_best.py'))
    best = study.best_trial
    print(f'best: trial {best.number}, val {study.user_attrs["metric"]} = {best.value:.4f}, '
          f'{best.params}')
    print(f'best config: {path}')
    print(f'train it:    python tools/train.py {path}')
    return path


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
