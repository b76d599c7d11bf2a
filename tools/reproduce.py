"""Reproduce a table of the paper: plan its runs, launch what is left, write the table.

    python tools/reproduce.py TABLE [--methods M ...] [--pretrain P ...] [--seeds 0 1 2]
        [--tasks T ...] [--launcher none|pytorch|slurm] [--gpus N] [--partition P]
        [--work-root DIR] [--data-root DIR] [--cfg-options k=v ...] [--dry-run | --collect]

TABLE is vtab1k, fgvc, ade20k, pascal-context-59 or pascal-context-60. Every (config, seed) of the
shipped configs is one run (VTAB-1k and FGVC: a selection run on train/val, then the final run on
train+val tested once on test); a run that finished with the same merged config is not run again,
an interrupted one is resumed. Without --dry-run or --collect it launches the runs that are left,
one after the other, through tools/train.py and tools/test.py in this process (--launcher none),
tools/dist_train.sh / dist_test.sh (pytorch) or tools/slurm_train.sh / slurm_test.sh (slurm), and
ends by writing the table. --dry-run prints the plan and the commands for another launcher;
--collect only writes the table: {work root}/{TABLE}/results.{md,csv,json}, ours (mean ± std over
the seeds) beside the paper's numbers. The protocol and the outputs: docs/reproduce.md.
"""
import argparse
import sys
from typing import List, Optional

from mmdavpt_lab import reproduce


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Plan, launch and tabulate the runs of one of the paper\'s tables',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('table', choices=reproduce.TABLES)
    parser.add_argument('--methods', nargs='+', metavar='METHOD',
                        help='config methods (classification: '
                        f'{" ".join(reproduce.CLS_METHODS)}; segmentation: '
                        f'{" ".join(reproduce.SEG_METHODS)}); default: all of the table\'s')
    parser.add_argument('--pretrain', nargs='+', default=['in21k'], metavar='P',
                        help=f'pre-trainings ({" ".join(reproduce.PRETRAINS)}; segmentation: '
                        'in21k); default: in21k')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--tasks', nargs='+', metavar='TASK',
                        help='only these VTAB-1k tasks / FGVC datasets (e.g. cifar, cub); a '
                        'group mean needs all of its tasks')
    parser.add_argument('--launcher', choices=reproduce.LAUNCHERS, default='none',
                        help='none: tools/train.py and tools/test.py in this process; pytorch: '
                        'tools/dist_train.sh / dist_test.sh; slurm: tools/slurm_train.sh / '
                        'slurm_test.sh')
    parser.add_argument('--gpus', type=int, default=1,
                        help='GPUs per run (pytorch, slurm); the per-GPU batch is set so that '
                        'the protocol\'s total batch stays (32 classification, 16 segmentation)')
    parser.add_argument('--partition', help='SLURM partition (--launcher slurm)')
    parser.add_argument('--work-root', default='work_dirs/reproduce',
                        help='the runs go to WORK_ROOT/TABLE/CONFIG/seedS_STAGE_DIGEST')
    parser.add_argument('--data-root',
                        help='the data: the folder of the VTAB-1k task folders, of the FGVC '
                        'dataset folders, ADEChallengeData2016, or VOCdevkit/VOC2010 (default: '
                        'the configs\' data_root, relative to the current directory)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='overrides for every run, as tools/train.py takes them, e.g. '
                        'model.backbone.init_cfg.checkpoint=PATH; part of each run\'s merged '
                        'config (and so of its work dir)')
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--dry-run', action='store_true',
                      help='print the plan and the commands; launch nothing, write nothing')
    mode.add_argument('--collect', action='store_true',
                      help='launch nothing; write the table of what the work dirs hold')
    parser.add_argument('--no-params', action='store_true',
                        help='do not count the tunable parameters (no model is built)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        runs = reproduce.plan(
            args.table, methods=args.methods, pretrains=args.pretrain, seeds=args.seeds,
            work_root=args.work_root, tasks=args.tasks, cfg_options=args.cfg_options,
            data_root=args.data_root, gpus=args.gpus)
        launch = dict(launcher=args.launcher, gpus=args.gpus, partition=args.partition)
        if args.dry_run:
            print(reproduce.describe(runs, **launch))
            return 0
        if not args.collect:
            reproduce.execute(runs, **launch)
    except (ValueError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    result = reproduce.collect(runs, count_params=not args.no_params)
    paths = reproduce.write_results(result, reproduce.results_dir(args.work_root, args.table))
    print(reproduce.format_markdown(result))
    print('written: ' + ', '.join(paths.values()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
