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

A data set whose ``manifest.json`` matches (format, seed, source data) and whose files are all
there is left as it is. Each is built in a temporary folder and moved into place at the end.

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
from importlib import metadata
from typing import Callable, Dict, List, Tuple

import numpy as np
from PIL import Image

# Label order of the package data (1,000 images each), as listed in its README.
ANIMAL_MNIST_CLASSES = ('bear', 'bird', 'cat', 'cow', 'dog', 'elephant', 'giraffe', 'horse',
                        'sheep', 'zebra')
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
    lines = {}
    for split in VTAB_SPLITS:
        os.makedirs(osp.join(task_dir, 'images', split))
        lines[split] = []
        for i, idx in enumerate(parts[split]):
            rel_path = f'images/{split}/{i:06d}.png'
            rgb = np.repeat(images[idx][:, :, None], 3, axis=2)
            Image.fromarray(rgb).save(osp.join(task_dir, rel_path))
            lines[split].append(f'{rel_path} {labels[idx]}')
    lines['train800val200'] = lines['train800'] + lines['val200']
    for name, split_lines in lines.items():
        _write_lines(osp.join(task_dir, f'{name}.txt'), split_lines)
    _write_lines(osp.join(task_dir, 'classes.txt'), ANIMAL_MNIST_CLASSES)


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
        'vtab': (osp.join(out, VTAB_TASK_DIR), _vtab_files()),
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


def _write_lines(path: str, lines) -> None:
    with open(path, 'w') as f:
        f.writelines(f'{line}\n' for line in lines)


def _source_info() -> dict:
    digest = hashlib.sha256()
    for path in animal_mnist_files():
        with open(path, 'rb') as f:
            digest.update(f.read())
    try:
        version = metadata.version('animal-mnist')
    except metadata.PackageNotFoundError:
        version = 'unknown'
    return dict(package='animal-mnist', version=version, sha256=digest.hexdigest())


def _vtab_files() -> Dict[str, int]:
    """Files to find in a built task: list files, and image folders with their file counts."""
    n = {split: PER_CLASS[split] * len(ANIMAL_MNIST_CLASSES) for split in VTAB_SPLITS}
    files = {f'images/{split}': count for split, count in n.items()}
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
