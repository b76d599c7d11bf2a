"""Build the offline demo data from the real Animal-MNIST silhouettes (deterministic per seed).

    python tools/prepare_demo_data.py [--out data] [--seed 0] [--force]

Writes ``{out}/animal_mnist_vtab/animal_mnist/`` (a VTAB-1k-style classification task) and
``{out}/animal_mnist_seg/`` (a segmentation set); see ``mmdavpt/datasets/demo_data.py``.
A data set already built with the same seed is kept.
"""
import argparse
import importlib.util
import os.path as osp
import time
from types import ModuleType

BUILDER = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'mmdavpt', 'datasets',
                   'demo_data.py')


def load_builder() -> ModuleType:
    """Load ``demo_data.py`` on its own: it needs NumPy and Pillow only, while importing the
    ``mmdavpt`` package would first import torch, MMSeg and MMPretrain (10-30 s)."""
    spec = importlib.util.spec_from_file_location('mmdavpt_demo_data', BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data', help='output root (default: data)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default: 0)')
    parser.add_argument('--force', action='store_true', help='rebuild even if up to date')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    result = load_builder().prepare_demo_data(args.out, args.seed, args.force)
    for key in ('vtab', 'seg'):
        print(f'{key}: {result[key]} ({result[key + "_status"]})')
    print(f'done in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main()
