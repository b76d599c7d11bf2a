"""Datasets and transforms; importing this module registers them.

MMPretrain: ``VPTFGVCDataset``, ``VTAB1kDataset``, ``LoadImageFromFileStrict``, the
``ClassBalancedSampler`` (P x K batches).
MMSeg (with ``mmdavpt[seg]``): ``AnimalMNISTSegDataset``, ``CheckSegMask``,
``LoadImageFromFileStrict``.
"""
from mmdavpt.registry import WITH_MMSEG

from .fgvc import FGVC_DATASETS, VPTFGVCDataset
from .samplers import ClassBalancedSampler, dataset_labels
from .transforms import CheckSegMask, ImageDecodeError, LoadImageFromFileStrict
from .vtab import VTAB_GROUPS, VTAB_TASKS, VTAB1kDataset

__all__ = [
    'CheckSegMask', 'ClassBalancedSampler', 'FGVC_DATASETS', 'ImageDecodeError',
    'LoadImageFromFileStrict', 'VPTFGVCDataset', 'VTAB1kDataset', 'VTAB_GROUPS', 'VTAB_TASKS',
    'dataset_labels'
]
if WITH_MMSEG:  # an MMSeg dataset (mmdavpt[seg])
    from .animal_mnist import ANIMAL_MNIST_CLASSES, AnimalMNISTSegDataset  # noqa: F401
    __all__ += ['ANIMAL_MNIST_CLASSES', 'AnimalMNISTSegDataset']
