"""The five FGVC benchmarks with the JSON splits of VPT (Jia et al., 2022)."""
import json
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.fileio import get_file_backend
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from .checks import check_class_coverage, check_label

# dataset_name -> (image root relative to data_root, number of classes)
FGVC_DATASETS: Dict[str, Tuple[str, int]] = {
    'cub': ('images', 200),
    'nabirds': ('images', 555),
    'oxford_flowers': ('', 102),
    'stanford_dogs': ('Images', 120),
    'stanford_cars': ('', 196),
}
FGVC_SPLITS: Dict[str, Tuple[str, ...]] = {
    'train': ('train.json', ),
    'val': ('val.json', ),
    'trainval': ('train.json', 'val.json'),
    'test': ('test.json', ),
}
TRAIN_SPLITS = ('train', 'trainval')


class _Pairs(list):
    """A JSON object as the list of its (key, value) pairs, so duplicate keys stay visible."""


def load_json_split(path: str, backend=None) -> List[Tuple[str, object]]:
    """Read a VPT split file ``{relative image path: class id}`` as a list of pairs.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, is not a JSON object, or repeats an image path.
    """
    backend = backend or get_file_backend(path)
    if not backend.exists(path):
        raise FileNotFoundError(f'split file not found: {path}')
    text = backend.get_text(path)
    if not text.strip():
        raise ValueError(f'{path}: split file is empty')
    try:
        content = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as e:
        raise ValueError(f'{path}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}') from e
    if not isinstance(content, _Pairs):
        raise ValueError(f'{path}: expected a JSON object {{image path: class id}}, '
                         f'got a {type(content).__name__}')
    if not content:
        raise ValueError(f'{path}: split file is empty (no samples)')
    seen = set()
    for key, _ in content:
        if key in seen:
            raise ValueError(f'{path}: image {key!r} is listed more than once')
        seen.add(key)
    return list(content)


@DATASETS.register_module()
class VPTFGVCDataset(BaseDataset):
    """CUB-200-2011, NABirds, Oxford Flowers, Stanford Dogs and Stanford Cars with VPT's splits.

    Layout (VPT's ``{train,val,test}.json`` = ``{image path relative to the image root: id}``)::

        data_root/
            train.json  val.json  test.json
            <image root>/...      # 'images' (CUB, NABirds), 'Images' (Dogs), '' (Cars, Flowers)

    Args:
        data_root: the dataset directory holding the json files.
        dataset_name: one of ``'cub'``, ``'nabirds'``, ``'oxford_flowers'``,
            ``'stanford_dogs'``, ``'stanford_cars'``; selects the image root and the number of
            classes (200, 555, 102, 120, 196).
        split: ``'train'``, ``'val'``, ``'trainval'`` (train.json + val.json) or ``'test'``.
        data_prefix: image root relative to ``data_root``; defaults to the dataset's.
        classes: class names (a sequence, or a file with one name a line); defaults to the
            class ids as strings. Must have ``num_classes`` entries.
        remap_labels: map the sorted distinct ids found in all present split files to
            ``0..num_classes-1`` (what VPT's loader does) instead of requiring ids in
            ``[0, num_classes)``. For split files whose ids start at 1 or have gaps.
        allow_missing_classes: for the training splits, warn instead of raising when a class
            has no sample.
        **kwargs: passed to :class:`mmpretrain.datasets.BaseDataset` (``pipeline``,
            ``test_mode``, ``indices``, ``metainfo``, ...).
    """

    def __init__(self,
                 data_root: str,
                 dataset_name: str,
                 split: str = 'train',
                 data_prefix: Optional[str] = None,
                 classes: Union[str, Sequence[str], None] = None,
                 remap_labels: bool = False,
                 allow_missing_classes: bool = False,
                 **kwargs):
        if dataset_name not in FGVC_DATASETS:
            raise ValueError(f'dataset_name must be one of {sorted(FGVC_DATASETS)}, '
                             f'got {dataset_name!r}')
        if split not in FGVC_SPLITS:
            raise ValueError(f'split must be one of {list(FGVC_SPLITS)}, got {split!r}')
        image_root, self.num_classes = FGVC_DATASETS[dataset_name]
        self.dataset_name = dataset_name
        self.split = split
        self.remap_labels = remap_labels
        self.allow_missing_classes = allow_missing_classes
        self.backend = get_file_backend(data_root, enable_singleton=True)
        self.split_files = [
            self.backend.join_path(data_root, name) for name in FGVC_SPLITS[split]
        ]

        metainfo = dict(self._compat_classes(kwargs.pop('metainfo', None), classes))
        metainfo.setdefault('classes', tuple(str(i) for i in range(self.num_classes)))
        if len(metainfo['classes']) != self.num_classes:
            raise ValueError(f'{dataset_name} has {self.num_classes} classes, but '
                             f'{len(metainfo["classes"])} class names were given')
        super().__init__(
            ann_file='',
            data_root=data_root,
            data_prefix=image_root if data_prefix is None else data_prefix,
            metainfo=metainfo,
            **kwargs)

    def _label_remap(self) -> Dict[object, int]:
        """Sorted distinct ids of all present split files -> 0..num_classes-1 (VPT's rule)."""
        ids, sources = set(), []
        for name in dict.fromkeys(n for names in FGVC_SPLITS.values() for n in names):
            path = self.backend.join_path(self.data_root, name)
            if self.backend.exists(path):
                sources.append(path)
                for key, label in load_json_split(path, self.backend):
                    ids.add(check_label(label, None, f'{path}: key {key!r}'))
        if len(ids) != self.num_classes:
            raise ValueError(f'remap_labels: {", ".join(sources)} hold {len(ids)} distinct '
                             f'class ids, expected {self.num_classes}')
        return {label: i for i, label in enumerate(sorted(ids))}

    def load_data_list(self) -> List[dict]:
        """Read the split file(s) into ``dict(img_path=..., gt_label=...)`` items."""
        remap = self._label_remap() if self.remap_labels else None
        data_list, origin = [], {}
        for path in self.split_files:
            for key, label in load_json_split(path, self.backend):
                where = f'{path}: key {key!r}'
                if key in origin:
                    raise ValueError(f'{where}: image also listed in {origin[key]}')
                origin[key] = path
                if remap is not None:
                    label = remap[label]
                data_list.append(
                    dict(
                        img_path=self.backend.join_path(self.img_prefix, key),
                        gt_label=check_label(label, self.num_classes, where)))
        if self.split in TRAIN_SPLITS:
            check_class_coverage((d['gt_label'] for d in data_list), self.metainfo['classes'],
                                 ' + '.join(self.split_files), self.allow_missing_classes)
        return data_list

    def extra_repr(self) -> List[str]:
        """Dataset name, split files and image root, for ``repr``."""
        return [
            f'Dataset name: \t{self.dataset_name}',
            f'Split files: \t{", ".join(self.split_files)}',
            f'Prefix of images: \t{self.img_prefix}',
        ]
