"""Build the offline demo data from real images (deterministic per seed).

    python tools/prepare_demo_data.py [--out data] [--seed 0] [--force]
        [--tasks animal-mnist,digits,digit-pairs]

``animal-mnist`` (the default) writes ``{out}/animal_mnist_vtab/animal_mnist/`` (a VTAB-1k-style
classification task) and ``{out}/animal_mnist_seg/`` (a segmentation set) from the Animal-MNIST
silhouettes; ``digits`` and ``digit-pairs`` write ``{out}/extra_vtab/{digits,digit_pairs}/``
from scikit-learn's handwritten digits. See ``mmdavpt_lab/demo_data.py``. A data set
already built with the same seed is kept; an extra task built otherwise is replaced only with
``--force``.
"""
import argparse
import time

# NumPy and Pillow only: the lab's builder does not import ``mmdavpt`` (torch, MMSeg, MMPretrain).
from mmdavpt_lab import demo_data as builder

ANIMAL_MNIST = 'animal-mnist'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data', help='output root (default: data)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default: 0)')
    parser.add_argument('--force', action='store_true', help='rebuild even if up to date')
    parser.add_argument('--tasks', default=ANIMAL_MNIST,
                        help='comma-separated data sets to build: animal-mnist (classification '
                        'and segmentation), digits, digit-pairs (default: animal-mnist)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(',') if t.strip()]
    known = (ANIMAL_MNIST, *builder.EXTRA_TASKS)
    unknown = [t for t in tasks if t not in known]
    if unknown or not tasks:
        raise SystemExit(f'--tasks {args.tasks!r}: choose from {", ".join(known)}')
    start = time.perf_counter()
    if ANIMAL_MNIST in tasks:
        result = builder.prepare_demo_data(args.out, args.seed, args.force)
        for key in ('vtab', 'seg'):
            print(f'{key}: {result[key]} ({result[key + "_status"]})')
    extra = [t for t in tasks if t != ANIMAL_MNIST]
    if extra:
        for task, (path, status) in builder.prepare_extra_tasks(
                args.out, extra, args.seed, args.force).items():
            print(f'{task}: {path} ({status})')
    print(f'done in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main()
