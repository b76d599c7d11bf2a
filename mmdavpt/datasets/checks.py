"""Checks shared by the datasets: label range, class coverage, and data paths that find nothing.

Every failure names the split file or the paths it comes from, so a broken annotation is found by
reading the message, not by bisecting a training run.
"""
import copy
import warnings
from typing import Iterable, Optional, Sequence

from mmengine.config import Config
from mmengine.registry import DATASETS


def check_label(label: object, num_classes: Optional[int], where: str) -> int:
    """Return ``label`` as an int if it is an integer class id in ``[0, num_classes)``.

    Args:
        label: the value read from a split file (``bool`` is rejected, so is ``3.0``).
        num_classes: the number of classes of the dataset; None checks only that ``label`` is
            an integer.
        where: where the value was read, e.g. ``'/data/cub/train.json: key "a.jpg"'``.

    Raises:
        ValueError: if ``label`` is not an integer or lies outside ``[0, num_classes)``.
    """
    if isinstance(label, bool) or not isinstance(label, int):
        raise ValueError(f'{where}: class id {label!r} is not an integer')
    if num_classes is not None and not 0 <= label < num_classes:
        raise ValueError(f'{where}: class id {label} is outside [0, {num_classes})')
    return label


def check_class_coverage(labels: Iterable[int], classes: Sequence[str], source: str,
                         allow_missing_classes: bool) -> None:
    """Make sure every class has at least one sample in a training split.

    A class without training samples cannot be learnt, and the class -> prompt mapping of
    DA-VPT has no feature mean for it; that is an error unless explicitly allowed, in which
    case it is still reported as a warning.

    Args:
        labels: class ids of the samples of the split.
        classes: the class names, ``len(classes)`` is the number of classes.
        source: the split file(s), used in the message.
        allow_missing_classes: warn instead of raising.

    Raises:
        ValueError: if some class has no sample and ``allow_missing_classes`` is False.
    """
    present = set(labels)
    missing = [c for c in range(len(classes)) if c not in present]
    if not missing:
        return
    shown = ', '.join(f'{c} ({classes[c]})' for c in missing[:20])
    if len(missing) > 20:
        shown += f', ... and {len(missing) - 20} more'
    msg = (f'{source}: {len(missing)} of {len(classes)} classes have no training sample: '
           f'{shown}')
    if not allow_missing_classes:
        raise ValueError(msg + '. Pass allow_missing_classes=True to train anyway.')
    warnings.warn(msg, stacklevel=3)


def check_datasets_not_empty(cfg: Config, loaders: Sequence[str]) -> None:
    """Raise, naming where the data was looked for, if a dataloader's dataset has no sample.

    MMEngine's ``BaseDataset`` fails on an empty data list with NumPy's "need at least one array
    to concatenate" (or, unserialised, in the sampler), with no path. Each dataset of
    ``cfg[loader]`` is built with ``lazy_init=True`` (no image is read) and its
    ``load_data_list()`` called once; wrappers (``RepeatDataset``, ...) are looked through.
    Needs the config's default scope (set by building the ``Runner``).

    Args:
        cfg: the config.
        loaders: e.g. ``('train_dataloader', 'val_dataloader')``; absent or ``None`` ones are
            skipped.

    Raises:
        ValueError: a dataset is empty; the message names its type, ``data_root``,
            ``ann_file`` and ``data_prefix``.
    """
    for key in loaders:
        loader = cfg.get(key)
        if not loader:
            continue
        dataset_cfg = copy.deepcopy(loader['dataset'])
        while isinstance(dataset_cfg.get('dataset'), dict):
            dataset_cfg = dataset_cfg['dataset']
        if 'datasets' in dataset_cfg:  # ConcatDataset: each part has its own paths
            continue
        dataset = DATASETS.build(dict(dataset_cfg, lazy_init=True))
        if dataset.load_data_list():
            continue
        where = ', '.join(f'{k}={dataset_cfg.get(k)!r}'
                          for k in ('data_root', 'ann_file', 'data_prefix', 'split')
                          if dataset_cfg.get(k) is not None)
        raise ValueError(f'{key}: the dataset {dataset_cfg.get("type")} has no sample '
                         f'({where}). Check these paths against the prepared data '
                         f'(docs/data_and_weights.md) or set them with --cfg-options '
                         f'{key}.dataset.data_root=...')
