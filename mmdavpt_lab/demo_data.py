"""Build the offline demo data from the real Animal-MNIST silhouettes, deterministically.

Two data sets, from disjoint images of the 10,000 (per class: 80 train800, 20 val200, 200 test,
then 500 silhouettes for segmentation training canvases and 200 for validation canvases):

``{out}/animal_mnist_vtab/animal_mnist/``, a VTAB-1k-style task for :class:`VTAB1kDataset`::

    images/{train800,val200,test}/000000.png   28x28 RGB
    train800.txt (800) val200.txt (200) train800val200.txt (1000) test.txt (2000)
    classes.txt  manifest.json

``{out}/animal_mnist_seg/``, for :class:`AnimalMNISTSegDataset`::

    img_dir/{train,val}/000000.png   112x112 RGB: 1-3 silhouettes on a noisy colour field
    ann_dir/{train,val}/000000.png   uint8 labels: 0 background, 1 + animal id
    splits/{train,val}.txt (400, 100)  classes.txt  manifest.json

More small tasks, built only when asked (:func:`prepare_extra_tasks`), from the 1,797 real
handwritten 8 x 8 digits that scikit-learn ships, in the same layout under
``{out}/extra_vtab/{digits,digit_pairs}/`` (docs/reports/classification.md):

- ``digits``: 10 classes, the 8 x 8 digits; train800 800, val200 200, test 797;
- ``digit_pairs``: 45 classes ``ab`` (a < b), two digits side by side on a 16 x 16 square;
  train800 810, val200 225, test 1350, no handwritten digit shared between splits.

A data set whose ``manifest.json`` matches (format, seed, source data) and whose files are all
there is left as it is. Each is built in a temporary folder and moved into place at the end.
An extra task whose folder holds another build (other seed, sizes or source) is not replaced
unless forced.

This module needs only NumPy and Pillow, so that ``tools/prepare_demo_data.py`` can load it
without importing torch, MMSeg and MMPretrain.
"""
import gzip
import hashlib
import importlib.util
import json
import os
import os.path as osp
import pickle
import shutil
from functools import partial
from importlib import metadata
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

# Label order of the package data (the same tuple as ``mmdavpt.datasets.ANIMAL_MNIST_CLASSES``,
# which this module does not import: importing ``mmdavpt`` imports torch; a test checks they match).
ANIMAL_MNIST_CLASSES = ('bear', 'bird', 'cat', 'cow', 'dog', 'elephant', 'giraffe', 'horse',
                        'sheep', 'zebra')
# Label order of the package data (1,000 images each), as listed in its README.
ANIMAL_MNIST_FILES = ('animal_data_version_3.gz', 'animal_label_version_3.gz')

FORMAT_VERSION = 1
VTAB_TASK_DIR = osp.join('animal_mnist_vtab', 'animal_mnist')
SEG_DIR = 'animal_mnist_seg'
# Images per class taken, in this order, from each class's shuffled 1,000.
PER_CLASS = {'train800': 80, 'val200': 20, 'test': 200, 'seg_train': 500, 'seg_val': 200}
VTAB_SPLITS = ('train800', 'val200', 'test')
SEG_IMAGES = {'train': 400, 'val': 100}
CANVAS_SIZE = 112
MAX_ANIMALS = 3
SCALE_RANGE = (1.0, 2.2)  # silhouette side = 28 * scale pixels
PLACEMENT_TRIES = 20
MAX_OVERLAP = 0.1  # fraction of a new silhouette allowed to fall on earlier ones


def animal_mnist_files() -> Tuple[str, str]:
    """Paths of the installed package's image and label files (the package is not imported)."""
    spec = importlib.util.find_spec('animal_mnist')
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError('the animal-mnist package is not installed '
                                  '(pip install --no-deps animal-mnist==0.4)')
    root = osp.join(list(spec.submodule_search_locations)[0], 'data', 'Animal_MNIST')
    paths = tuple(osp.join(root, name) for name in ANIMAL_MNIST_FILES)
    for path in paths:
        if not osp.isfile(path):
            raise FileNotFoundError(f'Animal-MNIST data file not found: {path}')
    return paths


def load_animal_mnist() -> Tuple[np.ndarray, np.ndarray]:
    """Load the silhouettes.

    Returns:
        images: (10000, 28, 28) uint8, animal bright (up to 255) on a black background.
        labels: (10000, ) int64 class ids in ``[0, 10)``, see :data:`ANIMAL_MNIST_CLASSES`.
    """
    data_path, label_path = animal_mnist_files()
    with gzip.open(data_path, 'rb') as f:
        images = np.asarray(pickle.load(f))
    with gzip.open(label_path, 'rb') as f:
        labels = np.asarray(pickle.load(f)).astype(np.int64)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f'{data_path}: expected (N, 28, 28) uint8 images, got '
                         f'{images.shape} {images.dtype}')
    if labels.shape != images.shape[:1] or not np.isin(labels, np.arange(10)).all():
        raise ValueError(f'{label_path}: expected {len(images)} labels in [0, 10)')
    return images, labels


def split_indices(labels: np.ndarray, seed: int) -> Dict[str, np.ndarray]:
    """Class-balanced, disjoint index sets named as :data:`PER_CLASS`, each shuffled."""
    rng = np.random.default_rng(seed)
    parts: Dict[str, List[np.ndarray]] = {name: [] for name in PER_CLASS}
    for c in range(len(ANIMAL_MNIST_CLASSES)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < sum(PER_CLASS.values()):
            raise ValueError(f'class {c} has {len(idx)} images, need {sum(PER_CLASS.values())}')
        start = 0
        for name, n in PER_CLASS.items():
            parts[name].append(idx[start:start + n])
            start += n
    return {name: rng.permutation(np.concatenate(p)) for name, p in parts.items()}


def write_vtab_task(images: np.ndarray, labels: np.ndarray, parts: Dict[str, np.ndarray],
                    task_dir: str) -> None:
    """Write the classification task."""
    write_list_task({split: (images[parts[split]], labels[parts[split]])
                     for split in VTAB_SPLITS}, ANIMAL_MNIST_CLASSES, task_dir)


def write_list_task(splits: Dict[str, Tuple[np.ndarray, np.ndarray]], classes: Sequence[str],
                    task_dir: str) -> None:
    """Write a VTAB-1k-style task: RGB PNGs, one list file per split, ``classes.txt``.

    Args:
        splits: ``{'train800': (images, labels), 'val200': ..., 'test': ...}``; images
            (N, H, W) uint8 grey levels (written as RGB), labels (N, ) class ids, in list order.
        classes: the class names, in id order.
        task_dir: the folder to write into (it must exist).
    """
    lines = {}
    for split in VTAB_SPLITS:
        os.makedirs(osp.join(task_dir, 'images', split))
        lines[split] = []
        for i, (image, label) in enumerate(zip(*splits[split])):
            rel_path = f'images/{split}/{i:06d}.png'
            rgb = np.repeat(image[:, :, None], 3, axis=2)
            Image.fromarray(rgb).save(osp.join(task_dir, rel_path))
            lines[split].append(f'{rel_path} {label}')
    lines['train800val200'] = lines['train800'] + lines['val200']
    for name, split_lines in lines.items():
        _write_lines(osp.join(task_dir, f'{name}.txt'), split_lines)
    _write_lines(osp.join(task_dir, 'classes.txt'), classes)


def render_canvas(rng: np.random.Generator, silhouettes: List[np.ndarray],
                  class_ids: List[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Paste silhouettes, in order, at random scales, positions and colours on a noisy field.

    Each position is drawn until the new silhouette covers at most :data:`MAX_OVERLAP` of its
    own area of earlier ones (at most :data:`PLACEMENT_TRIES` draws, then the last is kept).

    Args:
        rng: the random generator (consumed in a fixed order).
        silhouettes: (28, 28) uint8 alpha masks.
        class_ids: their animal ids.

    Returns:
        image: (S, S, 3) uint8 RGB; label: (S, S) uint8, 0 background, ``1 + id`` where an
        animal covers the pixel (alpha >= 0.5; a later animal covers an earlier one).
    """
    size = CANVAS_SIZE
    coarse = rng.integers(0, 110, (4, 4, 3), dtype=np.uint8)
    field = Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR)
    field = np.asarray(field, np.float32)
    image = np.clip(field + rng.normal(0, 10, field.shape), 0, 255)
    label = np.zeros((size, size), np.uint8)
    for sil, class_id in zip(silhouettes, class_ids):
        side = int(round(28 * rng.uniform(*SCALE_RANGE)))
        alpha = Image.fromarray(sil).resize((side, side), Image.Resampling.BILINEAR)
        alpha = np.asarray(alpha, np.float32)[:, :, None] / 255
        if rng.random() < 0.5:
            alpha = alpha[:, ::-1]
        mask = alpha[:, :, 0] >= 0.5
        for _ in range(PLACEMENT_TRIES):  # prefer a place that hides little of the others
            y, x = rng.integers(0, size - side + 1, 2)
            covered = label[y:y + side, x:x + side][mask] > 0
            if covered.size == 0 or covered.mean() <= MAX_OVERLAP:
                break
        colour = rng.uniform(150, 255, 3)
        region = image[y:y + side, x:x + side]
        region[:] = region * (1 - alpha) + colour * alpha
        label[y:y + side, x:x + side][mask] = class_id + 1
    return np.round(image).astype(np.uint8), label


def write_seg_set(images: np.ndarray, labels: np.ndarray, parts: Dict[str, np.ndarray],
                  seg_dir: str, seed: int) -> None:
    """Write the segmentation set."""
    rng = np.random.default_rng([seed, 1])
    os.makedirs(osp.join(seg_dir, 'splits'))
    for split, num_images in SEG_IMAGES.items():
        pool = parts[f'seg_{split}']
        for sub in ('img_dir', 'ann_dir'):
            os.makedirs(osp.join(seg_dir, sub, split))
        names = []
        for i in range(num_images):
            chosen = rng.choice(pool, int(rng.integers(1, MAX_ANIMALS + 1)), replace=False)
            image, label = render_canvas(rng, [images[j] for j in chosen],
                                         [int(labels[j]) for j in chosen])
            name = f'{i:06d}'
            Image.fromarray(image).save(osp.join(seg_dir, 'img_dir', split, f'{name}.png'))
            Image.fromarray(label).save(osp.join(seg_dir, 'ann_dir', split, f'{name}.png'))
            names.append(name)
        _write_lines(osp.join(seg_dir, 'splits', f'{split}.txt'), names)
    _write_lines(osp.join(seg_dir, 'classes.txt'), ('background', ) + ANIMAL_MNIST_CLASSES)


def prepare_demo_data(out: str = 'data', seed: int = 0, force: bool = False) -> Dict[str, str]:
    """Build (or keep, if already built with the same seed) both demo data sets under ``out``.

    Returns:
        ``{'vtab': task dir, 'seg': seg dir, 'vtab_status': 'built' | 'kept', 'seg_status': ...}``.
    """
    source = _source_info()
    stamp = dict(format_version=FORMAT_VERSION, seed=seed, source=source)
    targets = {
        'vtab': (osp.join(out, VTAB_TASK_DIR), _vtab_files(
            {split: PER_CLASS[split] * len(ANIMAL_MNIST_CLASSES) for split in VTAB_SPLITS})),
        'seg': (osp.join(out, SEG_DIR), _seg_files()),
    }
    todo = [key for key, (path, files) in targets.items()
            if force or not _is_built(path, stamp, files)]
    result = {key: path for key, (path, _) in targets.items()}
    result.update({f'{key}_status': 'built' if key in todo else 'kept' for key in targets})
    if not todo:
        return result
    images, labels = load_animal_mnist()
    parts = split_indices(labels, seed)
    writers: Dict[str, Callable[[str], None]] = {
        'vtab': lambda d: write_vtab_task(images, labels, parts, d),
        'seg': lambda d: write_seg_set(images, labels, parts, d, seed),
    }
    for key in todo:
        _build_into(targets[key][0], stamp, writers[key], force)
    return result


# ---- more small tasks, built on demand (tools/prepare_demo_data.py --tasks digits,digit-pairs)
# Both come from the 1,797 real handwritten digits that scikit-learn ships (UCI "Optical
# Recognition of Handwritten Digits", test part: 8 x 8 grey levels 0-16, 13 writers).
EXTRA_VTAB_DIR = 'extra_vtab'
EXTRA_FORMAT_VERSION = 1
DIGITS_FILE = ('datasets', 'data', 'digits.csv.gz')  # inside the scikit-learn package
DIGIT_CLASSES = tuple(str(d) for d in range(10))
# 'digits': per class, in this order from its shuffled images; the rest (94-103) are test.
DIGITS_PER_CLASS = {'train800': 80, 'val200': 20}
# 'digit_pairs': the 45 classes 'ab' (a < b), a 16 x 16 image with digit a left of digit b.
PAIR_CLASSES = tuple((a, b) for a in range(10) for b in range(a + 1, 10))
# Each digit's images are cut into disjoint pools (rest: test), so that no handwritten digit of
# a val or test pair is seen in training; pairs are drawn within a split's pools.
PAIR_POOL_PER_DIGIT = {'train800': 80, 'val200': 25}
PAIRS_PER_CLASS = {'train800': 18, 'val200': 5, 'test': 30}
#: task name (``--tasks``) -> its folder under ``{out}/extra_vtab``.
EXTRA_TASKS = {'digits': 'digits', 'digit-pairs': 'digit_pairs'}


def sklearn_digits_file() -> str:
    """Path of scikit-learn's ``digits.csv.gz`` (scikit-learn is found, not imported)."""
    spec = importlib.util.find_spec('sklearn')
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError('scikit-learn is not installed (pip install scikit-learn)')
    path = osp.join(list(spec.submodule_search_locations)[0], *DIGITS_FILE)
    if not osp.isfile(path):
        raise FileNotFoundError(f'scikit-learn digits file not found: {path}')
    return path


def load_sklearn_digits() -> Tuple[np.ndarray, np.ndarray]:
    """The digits of ``sklearn.datasets.load_digits``, read from the file that function reads.

    Returns:
        images: (1797, 8, 8) uint8, ink bright (level ``v`` of 0-16 written as
        ``round(v * 255 / 16)``) on black.
        labels: (1797, ) int64 digits in ``[0, 10)``.
    """
    path = sklearn_digits_file()
    data = np.loadtxt(path, delimiter=',')
    if data.ndim != 2 or data.shape[1] != 65 or data[:, :64].min() < 0 \
            or data[:, :64].max() > 16:
        raise ValueError(f'{path}: expected rows of 64 levels in [0, 16] and a digit')
    labels = data[:, 64].astype(np.int64)
    if not np.isin(labels, np.arange(10)).all():
        raise ValueError(f'{path}: labels outside [0, 10)')
    images = np.round(data[:, :64] * (255 / 16)).astype(np.uint8).reshape(-1, 8, 8)
    return images, labels


def class_parts(labels: np.ndarray, per_class: Dict[str, int], rest: str,
                rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Cut each class's shuffled indices into ``per_class[name]`` for each name (in order),
    the remainder going to ``rest``; each part is returned shuffled.

    Raises:
        ValueError: a class has no image left for ``rest``.
    """
    parts: Dict[str, List[np.ndarray]] = {name: [] for name in (*per_class, rest)}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) <= sum(per_class.values()):
            raise ValueError(f'class {c} has {len(idx)} images, need more than '
                             f'{sum(per_class.values())}')
        start = 0
        for name, n in per_class.items():
            parts[name].append(idx[start:start + n])
            start += n
        parts[rest].append(idx[start:])
    return {name: rng.permutation(np.concatenate(p)) for name, p in parts.items()}


def digits_task(images: np.ndarray, labels: np.ndarray,
                seed: int) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Task 'digits': the real 8 x 8 digits, 80 / 20 per class for train800 / val200, the
    other 797 for test. Returns ``{split: (images (N, 8, 8), labels (N, ))}``."""
    parts = class_parts(labels, DIGITS_PER_CLASS, 'test', np.random.default_rng([seed, 2]))
    return {split: (images[idx], labels[idx]) for split, idx in parts.items()}


def render_pair(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two (8, 8) digits side by side, centred on a black (16, 16) square."""
    canvas = np.zeros((16, 16), np.uint8)
    canvas[4:12] = np.concatenate([left, right], axis=1)
    return canvas


def digit_pairs_task(images: np.ndarray, labels: np.ndarray,
                     seed: int) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Task 'digit_pairs': 45 classes, class ``k`` the pair :data:`PAIR_CLASSES` ``[k]``.

    Each digit's images are cut into pools (:data:`PAIR_POOL_PER_DIGIT`, the rest for test);
    the :data:`PAIRS_PER_CLASS` images of a class in a split are distinct (left, right) image
    pairs drawn from that split's pools of its two digits.

    Returns:
        ``{split: (images (N, 16, 16) uint8, labels (N, ))}``, each split shuffled.
    """
    rng = np.random.default_rng([seed, 3])
    pools = {split: [idx[labels[idx] == d] for d in range(10)] for split, idx in
             class_parts(labels, PAIR_POOL_PER_DIGIT, 'test', rng).items()}
    result = {}
    for split, n in PAIRS_PER_CLASS.items():
        pairs, pair_labels = [], []
        for k, (a, b) in enumerate(PAIR_CLASSES):
            pool_a, pool_b = pools[split][a], pools[split][b]
            chosen = rng.choice(len(pool_a) * len(pool_b), n, replace=False)
            pairs += [render_pair(images[pool_a[i // len(pool_b)]],
                                  images[pool_b[i % len(pool_b)]]) for i in chosen]
            pair_labels += [k] * n
        order = rng.permutation(len(pairs))
        result[split] = (np.stack(pairs)[order], np.asarray(pair_labels, np.int64)[order])
    return result


def prepare_extra_tasks(out: str = 'data', tasks: Sequence[str] = tuple(EXTRA_TASKS),
                        seed: int = 0, force: bool = False) -> Dict[str, Tuple[str, str]]:
    """Build (or keep, if already built alike) the tasks named in ``tasks`` under
    ``{out}/extra_vtab/{folder}`` (see :data:`EXTRA_TASKS`).

    A folder that holds a build with another seed, sizes or source data is not replaced unless
    ``force``; nor is one without our ``manifest.json``.

    Returns:
        ``{task: (task dir, 'built' | 'kept')}``.

    Raises:
        ValueError: an unknown task name.
        FileExistsError: the folder holds something else (see above).
    """
    unknown = [t for t in tasks if t not in EXTRA_TASKS]
    if unknown:
        raise ValueError(f'unknown task(s) {unknown}: choose from {sorted(EXTRA_TASKS)}')
    makers = {'digits': (digits_task, DIGIT_CLASSES, dict(per_class=DIGITS_PER_CLASS)),
              'digit-pairs': (digit_pairs_task, tuple(f'{a}{b}' for a, b in PAIR_CLASSES),
                              dict(pool_per_digit=PAIR_POOL_PER_DIGIT,
                                   per_class=PAIRS_PER_CLASS))}
    source = dict(package='scikit-learn', file='/'.join(DIGITS_FILE),
                  sha256=_sha256([sklearn_digits_file()]))
    images, labels = load_sklearn_digits()
    result = {}
    for task in tasks:
        make, classes, sizes = makers[task]
        path = osp.join(out, EXTRA_VTAB_DIR, EXTRA_TASKS[task])
        stamp = dict(format_version=EXTRA_FORMAT_VERSION, task=task, seed=seed, sizes=sizes,
                     source=source)
        splits = make(images, labels, seed)
        files = _vtab_files({split: len(split_labels)
                             for split, (_, split_labels) in splits.items()})
        if not force and _is_built(path, stamp, files):
            result[task] = (path, 'kept')
            continue
        if not force:
            _refuse_other_build(path, stamp)
        manifest = dict(stamp, package_version=_package_version('scikit-learn'))
        _build_into(path, manifest, partial(write_list_task, splits, classes), force)
        result[task] = (path, 'built')
    return result


def _refuse_other_build(path: str, stamp: dict) -> None:
    """Raise if ``path`` holds a build whose manifest differs from ``stamp``."""
    manifest = osp.join(path, 'manifest.json')
    if not osp.isfile(manifest):
        return  # nothing there, or not ours: _build_into refuses the latter
    with open(manifest) as f:
        old = json.load(f)
    differ = [k for k in stamp if old.get(k) != stamp[k]]
    if differ:
        raise FileExistsError(
            f'{path} holds another build ({", ".join(differ)}: {[old.get(k) for k in differ]} '
            f'there, {[stamp[k] for k in differ]} asked): remove it, choose another --out, or '
            'pass force=True (--force) to replace it')


def _sha256(paths) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, 'rb') as f:
            digest.update(f.read())
    return digest.hexdigest()


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return 'unknown'


def _write_lines(path: str, lines) -> None:
    with open(path, 'w') as f:
        f.writelines(f'{line}\n' for line in lines)


def _source_info() -> dict:
    return dict(package='animal-mnist', version=_package_version('animal-mnist'),
                sha256=_sha256(animal_mnist_files()))


def _vtab_files(counts: Dict[str, int]) -> Dict[str, int]:
    """Files to find in a built task: list files, and image folders with their file counts
    (``counts``: images per split)."""
    files = {f'images/{split}': n for split, n in counts.items()}
    files.update({f'{name}.txt': 0 for name in (*VTAB_SPLITS, 'train800val200', 'classes')})
    return files


def _seg_files() -> Dict[str, int]:
    files = {'classes.txt': 0}
    for split, count in SEG_IMAGES.items():
        files.update({f'img_dir/{split}': count, f'ann_dir/{split}': count,
                      f'splits/{split}.txt': 0})
    return files


def _is_built(path: str, stamp: dict, files: Dict[str, int]) -> bool:
    manifest = osp.join(path, 'manifest.json')
    if not osp.isfile(manifest):
        return False
    with open(manifest) as f:
        if {k: v for k, v in json.load(f).items() if k in stamp} != stamp:
            return False
    for rel, count in files.items():
        full = osp.join(path, rel)
        if count == 0 and not osp.isfile(full):
            return False
        if count and (not osp.isdir(full) or len(os.listdir(full)) != count):
            return False
    return True


def _build_into(path: str, stamp: dict, write: Callable[[str], None], force: bool) -> None:
    """Write into ``path + '.tmp'``, add the manifest, then replace ``path``."""
    if osp.exists(path) and not force and not osp.isfile(osp.join(path, 'manifest.json')):
        raise FileExistsError(f'{path} exists but was not built by prepare_demo_data (no '
                              'manifest.json): remove it or pass force=True (--force)')
    tmp = path + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    write(tmp)
    with open(osp.join(tmp, 'manifest.json'), 'w') as f:
        json.dump(stamp, f, indent=2)
    if osp.exists(path):
        shutil.rmtree(path)
    os.replace(tmp, path)
