"""Train and test several methods over seeds and compare them (mean ± std, paired t interval).

    python tools/analysis/compare_methods.py CONFIG [NAME=CONFIG ...] \\
        [--variant NAME key=value ...] [--seeds 0 1 2] [--iters N | --epochs N] [--jobs 2] \\
        [--baseline NAME] [--amp] [--work-dir work_dirs/compare]

Paths are relative to the current directory (configs not found there: to the repository root).
A method is a config (named by its file stem, or ``NAME=CONFIG``) or a variant: a config with
``--cfg-options``-style overrides, the first config (or ``--base``) unless the variant names its
own (``--variant no-bg model.guidance.ignore_classes="(0,)"``, ``--variant paper CONFIG
model.guidance.loss_xp.sample_side=mhsa``).
For every (method, seed) the script (``mmdavpt_lab.compare.run_one``)

1. trains as ``tools/train.py`` does (``randomness.seed`` = the seed, and the mapping seed
   ``model.guidance.mapping.seed`` too when the model has DA-VPT guidance; ``--iters`` shortens an
   iteration-based schedule, ``--epochs`` an epoch-based one); a config that keeps its best-val
   checkpoint (``default_hooks.checkpoint.save_best``) validates during training, others do not;
2. tests that best-val checkpoint, else the final one, once as ``tools/test.py`` does (and once
   more with ``--tta`` for MMSeg configs: single-scale and multi-scale + flip mIoU; top-1 for
   MMPretrain); a guided MMPretrain model also gets its CLS -> positive-prompt attention share
   on val, as ``tools/analysis/visualize_attention.py --split val`` measures it;
3. writes ``{work_dir}/{method}/seed{S}/compare_result.json``. A run with that file is not run
   again (another ``--work-dir`` reruns it); a run whose training finished is only tested.

All of a run happens in one process (``mmdavpt_lab.run``, its output in the run's
``run.out``), forked from a server that imported the package once. Up to ``--jobs`` runs go
side by side, each a process with ``--threads`` threads (default 1).
At the end it prints per method the mean ± std over the seeds, the paired difference to
``--baseline`` with its 95 % t interval over the seeds both have, the tunable parameters and the
training s/step, and writes ``{work_dir}/compare.json`` and ``{work_dir}/compare.png``. A run
that fails does not stop the others; the tool then lists the failures and exits with status 1.

``--pool A/compare.json B/compare.json --baseline NAME`` trains nothing: it pools finished
comparisons (e.g. one per task) into one table whose pairs are the (comparison, seed) pairs. A
file given twice, a run held by two files (a copy) and options that would be ignored beside
``--pool`` are refused.
"""
import argparse
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from mmdavpt_lab.compare import pool_comparisons, run_comparison

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='*', help='configs, as PATH or NAME=PATH')
    parser.add_argument('--variant', nargs='+', action='append', default=[],
                        metavar=('NAME', '[CONFIG] KEY=VALUE'),
                        help='a method: CONFIG (default: the first config, or --base) with these '
                        'overrides (repeatable)')
    parser.add_argument('--base', help='the config the variants modify, itself not a method '
                        '(default: the first config)')
    parser.add_argument('--seeds', nargs='+', type=int, help='default: 0 1 2')
    parser.add_argument('--iters', type=int, help='training iterations (iteration-based loops)')
    parser.add_argument('--epochs', type=int, help='training epochs (epoch-based loops)')
    parser.add_argument('--baseline', help='method the others are paired with')
    parser.add_argument('--amp', action='store_true',
                        help='bfloat16 (CPU) / float16 (GPU) training and testing')
    parser.add_argument('--no-tta', action='store_true', help='MMSeg: skip the --tta test')
    parser.add_argument('--jobs', type=int, help='runs side by side (default 1)')
    parser.add_argument('--threads', type=int, help='threads per run (default 1)')
    parser.add_argument('--work-dir', help='default: work_dirs/compare')
    parser.add_argument('--pool', nargs='+', metavar='COMPARE_JSON',
                        help='train nothing: pool the runs of these compare.json files (e.g. '
                        'one per task) and print one table, each (file, seed) a pair')
    args = parser.parse_args(argv)
    if args.pool:
        given = [f'--{k.replace("_", "-")}' for k in ('variant', 'base', 'seeds', 'iters',
                                                       'epochs', 'amp', 'no_tta', 'jobs',
                                                       'threads', 'work_dir')
                 if getattr(args, k)] + (['CONFIG'] if args.configs else [])
        if given:
            parser.error(f'--pool trains nothing and reads everything from the compare.json '
                         f'files: {", ".join(given)} would be ignored; drop them (--baseline is '
                         'the one option --pool takes)')
        return args
    defaults = dict(seeds=[0, 1, 2], jobs=1, threads=1,
                    work_dir=osp.join('work_dirs', 'compare'))
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.jobs < 1 or args.threads < 1:
        parser.error('--jobs and --threads must be >= 1')
    if args.iters is not None and args.epochs is not None:
        parser.error('give --iters or --epochs, not both')
    if len(set(args.seeds)) < len(args.seeds):
        parser.error(f'--seeds {" ".join(map(str, args.seeds))} repeats a seed: each (method, '
                     'seed) is one run directory')
    return args


def _find(path: str, root: str) -> str:
    """A config path relative to the current directory, else to the repository root."""
    found = osp.abspath(path) if osp.isfile(path) else osp.join(root, path)
    if not osp.isfile(found):
        raise SystemExit(f'config {path} not found')
    return found


def parse_methods(configs: Sequence[str], variants: Sequence[Sequence[str]],
                  base: Optional[str] = None,
                  root: str = ROOT) -> Dict[str, Tuple[str, List[str]]]:
    """{name: (config path, overrides)} in command-line order."""
    methods: Dict[str, Tuple[str, List[str]]] = {}
    for item in configs:
        name, path = item.split('=', 1) if '=' in item else (
            osp.splitext(osp.basename(item))[0], item)
        if name in methods:
            raise SystemExit(f'method name {name!r} given twice')
        methods[name] = (_find(path, root), [])
    first = _find(base, root) if base is not None else (
        next(iter(methods.values()))[0] if methods else None)
    for name, *options in variants:
        config = first
        if options and '=' not in options[0]:
            config, options = _find(options[0], root), options[1:]
        if config is None:
            raise SystemExit(f'--variant {name} needs a config to modify: give one, or --base')
        bad = [o for o in options if '=' not in o]
        if bad:
            raise SystemExit(f'--variant {name}: overrides must be key=value, got {bad}')
        if name in methods:
            raise SystemExit(f'method name {name!r} given twice')
        methods[name] = (config, options)
    if not methods:
        raise SystemExit('no method: give configs or --variant')
    return methods


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.pool:
        try:
            out = pool_comparisons(args.pool, args.baseline)
        except (OSError, ValueError) as e:
            raise SystemExit(f'--pool: {e}') from e
        print(f'{out["metric"]}, pooled over {len(args.pool)} comparisons x their seeds')
        print(out['table'])
        return out
    methods = parse_methods(args.configs, args.variant, args.base)
    if args.baseline is not None and args.baseline not in methods:
        raise SystemExit(f'--baseline {args.baseline!r} is not a method: {list(methods)}')
    try:
        out = run_comparison(methods, args.seeds, osp.abspath(args.work_dir), ROOT,
                             baseline=args.baseline, jobs=args.jobs, iters=args.iters,
                             epochs=args.epochs, amp=args.amp, tta=not args.no_tta,
                             threads=args.threads, log=lambda line: print(line, flush=True))
    except ValueError as e:  # refused before any run (check_comparison)
        raise SystemExit(f'compare_methods: {e}') from e
    print(f'\n{out["metric"]}, seeds {args.seeds}' +
          (f', {args.iters} iterations' if args.iters else '') +
          (f', {args.epochs} epochs' if args.epochs else ''))
    print(out['table'])
    print(f'plot: {out["plot"]}' if out['plot'].endswith('.png') else out['plot'])
    for failed in out['failed']:
        print(f'FAILED: {failed["method"]} seed {failed["seed"]}: {failed["error"]}')
    if out['failed']:
        raise SystemExit(f'compare_methods: {len(out["failed"])} of '
                         f'{len(out["failed"]) + len(out["runs"])} runs failed (listed above); '
                         'the table leaves them out')
    return out


if __name__ == '__main__':
    main()
