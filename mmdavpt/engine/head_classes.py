"""Before training: the classes of the model's heads against the classes of the training data.

A head with fewer classes than the data fails deep inside the loss (an index error, a device-side
assert on GPU); a head with more trains classes that never occur, and with DA-VPT guidance those
classes sit in the class -> prompt mapping with their placeholder prompt. Both are caught here,
naming both numbers and where they come from. :class:`~mmdavpt.engine.hooks.ConfigGuardHook`
runs :func:`check_head_classes` in ``before_train``.
"""
from logging import Logger
from typing import List, Optional, Tuple

from mmengine.model import is_model_wrapper
from torch import nn


def head_class_counts(model: nn.Module) -> List[Tuple[str, int]]:
    """``(config key, number of classes)`` of each part of ``model`` that has one: MMPretrain's
    ``head`` and ``data_preprocessor`` (its one-hot labels for Mixup/CutMix), MMSeg's
    ``decode_head`` and ``auxiliary_head`` (one or a list)."""
    if is_model_wrapper(model):
        model = model.module
    counts = []
    for key in ('head', 'decode_head', 'auxiliary_head', 'data_preprocessor'):
        parts = getattr(model, key, None)
        parts = parts if isinstance(parts, nn.ModuleList) else [parts]
        for i, part in enumerate(parts):
            num = getattr(part, 'num_classes', None)
            if isinstance(num, int):
                where = f'{key}.{i}' if len(parts) > 1 else key
                counts.append((f'model.{where}.num_classes', num))
    return counts


def dataset_num_classes(dataset) -> Optional[int]:
    """``len(dataset.metainfo['classes'])``, or ``None`` when the dataset does not name them."""
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    return len(classes) if classes else None


def check_head_classes(model: nn.Module, dataset, logger: Logger) -> None:
    """Raise if a head has fewer classes than the training data; warn if it has more.

    Args:
        model: the runner's model (a wrapper is unwrapped).
        dataset: the training dataset; its ``metainfo['classes']`` is the reference. A dataset
            without class names is not checked (said in the log).
        logger: where the warnings go.

    Raises:
        ValueError: naming the head's key and number, and the dataset's number of classes.
    """
    num_data = dataset_num_classes(dataset)
    counts = head_class_counts(model)
    if num_data is None:
        if counts:
            logger.info(f'{type(dataset).__name__} names no classes (metainfo["classes"]): the '
                        "model's number of classes is not checked against the data")
        return
    source = f"{num_data} classes in train_dataloader.dataset ({type(dataset).__name__}.metainfo" \
             "['classes'])"
    for key, num in counts:
        if num < num_data:
            raise ValueError(f'{key}={num} but there are {source}: labels {num}..{num_data - 1} '
                             f'are outside the head. Set {key}={num_data}')
        if num > num_data:
            logger.warning(
                f'{key}={num} but there are only {source}: classes {num_data}..{num - 1} never '
                'occur in training (with DA-VPT guidance they keep their placeholder prompt and '
                f'take no part in the k-means mapping). Set {key}={num_data} unless the head is '
                'meant to be larger')
