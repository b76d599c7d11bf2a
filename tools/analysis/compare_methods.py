"""Train and test several methods over seeds and compare them (mean ± std, paired t interval).

    python tools/analysis/compare_methods.py CONFIG [NAME=CONFIG ...] \\
        [--variant NAME key=value ...] [--seeds 0 1 2] [--iters N] [--jobs 2] \\
        [--baseline NAME] [--amp] [--work-dir work_dirs/compare]

A method is a config (named by its file stem, or ``NAME=CONFIG``) or a variant: the first config
with ``--cfg-options``-style overrides (``--variant no-bg model.guidance.ignore_classes="(0,)"``).
For every (method, seed) the script

1. trains with ``tools/train.py`` (``randomness.seed`` = the seed, and the mapping seed
   ``model.guidance.mapping.seed`` too when the model has DA-VPT guidance; ``--iters`` shortens an
   iteration-based schedule; no validation during training);
2. tests the final checkpoint once with ``tools/test.py`` (and once more with ``--tta`` for MMSeg
   configs: single-scale ``ss`` and multi-scale + flip ``tta`` mIoU; top-1 for MMPretrain);
3. writes ``{work_dir}/{method}/seed{S}/compare_result.json``. A run with that file is not run
   again (change ``--work-dir`` to rerun); a run whose final checkpoint exists is only tested.

Up to ``--jobs`` runs go side by side, each a process with ``--threads`` threads (default 1).
At the end it prints per method the mean ± std over the seeds, the paired difference to
``--baseline`` with its 95 % t interval over the seeds both have, the tunable parameters and the
training s/step, and writes ``{work_dir}/compare.json`` and ``{work_dir}/compare.png``.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config, DictAction

from mmdavpt.analysis.compare import (
    METRICS,
    RESULT_FILE,
    count_tunable_params,
    format_summary,
    plot_runs,
    read_test_metrics,
    schedule_options,
    seconds_per_step,
    summarize,
)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LABELS = {'ss': 'single-scale', 'tta': 'TTA'}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='+', help='configs, as PATH or NAME=PATH')
    parser.add_argument('--variant', nargs='+', action='append', default=[],
                        metavar=('NAME', 'KEY=VALUE'),
                        help='a method: the first config with these overrides (repeatable)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--iters', type=int, help='training iterations (iteration-based loops)')
    parser.add_argument('--baseline', help='method the others are paired with')
    parser.add_argument('--amp', action='store_true',
                        help='bfloat16 (CPU) / float16 (GPU) training and testing')
    parser.add_argument('--no-tta', action='store_true', help='MMSeg: skip the --tta test')
    parser.add_argument('--jobs', type=int, default=1, help='runs side by side')
    parser.add_argument('--threads', type=int, default=1, help='threads per run')
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'compare'))
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.threads < 1:
        parser.error('--jobs and --threads must be >= 1')
    return args


def parse_methods(args: argparse.Namespace) -> Dict[str, Tuple[str, List[str]]]:
    """{name: (config path, overrides)} in command-line order."""
    methods: Dict[str, Tuple[str, List[str]]] = {}
    for item in args.configs:
        name, path = item.split('=', 1) if '=' in item else (
            osp.splitext(osp.basename(item))[0], item)
        if not osp.isfile(path):
            raise SystemExit(f'config {path} not found')
        methods[name] = (path, [])
    first = next(iter(methods.values()))[0]
    for name, *options in args.variant:
        bad = [o for o in options if '=' not in o]
        if bad:
            raise SystemExit(f'--variant {name}: overrides must be key=value, got {bad}')
        if name in methods:
            raise SystemExit(f'method name {name!r} given twice')
        methods[name] = (first, options)
    if args.baseline is not None and args.baseline not in methods:
        raise SystemExit(f'--baseline {args.baseline!r} is not a method: {list(methods)}')
    return methods


def run_options(config: str, overrides: List[str], seed: int,
                iters: Optional[int]) -> Tuple[List[str], Config]:
    """The ``--cfg-options`` of one run and the merged config they give."""
    options = list(overrides) + [f'randomness.seed={seed}']
    cfg = _merged(config, options)
    if cfg.model.get('guidance') is not None:
        options.append(f'model.guidance.mapping.seed={seed}')
    if iters is not None:
        options += schedule_options(cfg, iters)
    options += ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']
    return options, _merged(config, options)


def _merged(config: str, options: List[str]) -> Config:
    """``config`` with ``options`` applied as ``tools/train.py --cfg-options`` applies them."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(parser.parse_args(['--cfg-options', *options]).cfg_options)
    return cfg


def run_command(cmd: List[str], log_path: str, threads: int) -> float:
    """Run ``cmd`` in the repository root with its output in ``log_path``; returns the wall
    time, raises with the log's tail on failure."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONWARNINGS='ignore')
    start = time.perf_counter()
    with open(log_path, 'w') as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if proc.returncode != 0:
        with open(log_path) as log:
            tail = ''.join(log.readlines()[-30:])
        raise RuntimeError(f'{" ".join(cmd)} failed ({proc.returncode}); see {log_path}:\n{tail}')
    return time.perf_counter() - start


def final_checkpoint(work_dir: str, cfg: Config) -> str:
    loop = cfg.train_cfg
    if 'max_iters' in loop:
        return osp.join(work_dir, f'iter_{loop.max_iters}.pth')
    return osp.join(work_dir, f'epoch_{loop.max_epochs}.pth')


def run_one(method: str, config: str, overrides: List[str], seed: int,
            args: argparse.Namespace) -> dict:
    """Train and test one (method, seed), or read its result file when it finished before."""
    work_dir = osp.join(args.work_dir, method, f'seed{seed}')
    result_path = osp.join(work_dir, RESULT_FILE)
    options, cfg = run_options(config, overrides, seed, args.iters)
    if osp.isfile(result_path):
        with open(result_path) as f:
            result = json.load(f)
        if (result['config'], result['cfg_options']) != (config, options):
            raise SystemExit(f'{result_path} is a run of {result["config"]} with '
                             f'{result["cfg_options"]}, not of {config} with {options}: use '
                             'another --work-dir')
        print(f'[compare] {method} seed {seed}: done before ({result_path})', flush=True)
        return result
    os.makedirs(work_dir, exist_ok=True)
    scope = cfg.get('default_scope', 'mmpretrain')
    if scope not in METRICS:
        raise SystemExit(f'{config}: default_scope {scope!r} is not one of {sorted(METRICS)}')
    py = sys.executable
    ckpt = final_checkpoint(work_dir, cfg)
    train_seconds = None
    if not osp.isfile(ckpt):
        print(f'[compare] {method} seed {seed}: training in {work_dir}', flush=True)
        train_seconds = run_command(
            [py, 'tools/train.py', config, '--work-dir', work_dir,
             *(['--amp'] if args.amp else []), '--cfg-options', *options],
            osp.join(work_dir, 'train.out'), args.threads)
    modes = [('ss', [])]
    if scope == 'mmseg' and not args.no_tta:
        modes.append(('tta', ['--tta']))
    metrics = {}
    test_options = options + (['test_cfg.fp16=True'] if args.amp else [])
    for mode, extra in modes:
        test_dir = osp.join(work_dir, f'test_{mode}')
        run_command([py, 'tools/test.py', config, ckpt, '--work-dir', test_dir, *extra,
                     '--cfg-options', *test_options],
                    osp.join(work_dir, f'test_{mode}.out'), args.threads)
        metrics[mode] = float(read_test_metrics(test_dir)[METRICS[scope]])
    result = dict(method=method, seed=seed, config=config, cfg_options=options,
                  checkpoint=ckpt, metric=METRICS[scope], metrics=metrics,
                  train_seconds=train_seconds, seconds_per_step=seconds_per_step(work_dir),
                  tunable_params=count_tunable_params(cfg))
    with open(result_path, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'[compare] {method} seed {seed}: ' + ', '.join(
        f'{LABELS.get(k, k)} {v:.2f}' for k, v in metrics.items()), flush=True)
    return result


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    os.chdir(ROOT)
    methods = parse_methods(args)
    jobs = [(m, c, o, s) for s in args.seeds for m, (c, o) in methods.items()]
    print(f'[compare] {len(methods)} methods x {len(args.seeds)} seeds, {args.jobs} side by side '
          f'({args.threads} thread(s) each); work dir {args.work_dir}', flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(lambda job: run_one(*job, args), jobs))
    keys = list(dict.fromkeys(k for r in runs for k in r['metrics']))
    summary = summarize(runs, keys, args.baseline)
    metric = runs[0]['metric']
    print(f'\n{metric}, {len(args.seeds)} seeds' +
          (f', {args.iters} iterations' if args.iters else ''))
    print(format_summary(summary, keys, LABELS, args.baseline))
    out = dict(command=sys.argv if argv is None else ['compare_methods.py', *argv],
               metric=metric, iters=args.iters, seeds=args.seeds, baseline=args.baseline,
               summary=summary, runs=runs)
    with open(osp.join(args.work_dir, 'compare.json'), 'w') as f:
        json.dump(out, f, indent=2)
    why_not = plot_runs(runs, keys, osp.join(args.work_dir, 'compare.png'),
                        {k: f'{metric} {LABELS.get(k, k)}' for k in keys})
    print(why_not or f'plot: {osp.join(args.work_dir, "compare.png")}')
    return out


if __name__ == '__main__':
    main()
