"""VTAB-1k in its widely shared extracted form (image files + txt lists)."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.fileio import get_file_backend
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from .checks import check_class_coverage, check_label

# task -> (VTAB group, number of classes)
VTAB_TASKS: Dict[str, Tuple[str, int]] = {
    'cifar': ('natural', 100),
    'caltech101': ('natural', 102),
    'dtd': ('natural', 47),
    'oxford_flowers102': ('natural', 102),
    'oxford_iiit_pet': ('natural', 37),
    'svhn': ('natural', 10),
    'sun397': ('natural', 397),
    'patch_camelyon': ('specialized', 2),
    'eurosat': ('specialized', 10),
    'resisc45': ('specialized', 45),
    'diabetic_retinopathy': ('specialized', 5),
    'clevr_count': ('structured', 8),
    'clevr_dist': ('structured', 6),
    'dmlab': ('structured', 6),
    'kitti': ('structured', 4),
    'dsprites_loc': ('structured', 16),
    'dsprites_ori': ('structured', 16),
    'smallnorb_azi': ('structured', 18),
    'smallnorb_ele': ('structured', 9),
}
#: VTAB group -> its tasks, in the usual column order.
VTAB_GROUPS: Dict[str, Tuple[str, ...]] = {
    group: tuple(t for t, (g, _) in VTAB_TASKS.items() if g == group)
    for group in ('natural', 'specialized', 'structured')}
VTAB_SPLITS = ('train800', 'val200', 'train800val200', 'test')
TRAIN_SPLITS = ('train800', 'train800val200')
# 800 (or 1000) random training images cannot cover 397 classes: in the standard split some
# SUN397 classes have no training image. For these tasks the default is a warning, not an error.
TASKS_WITH_MISSING_CLASSES = ('sun397', )


def load_txt_split(path: str, num_classes: int, backend=None) -> List[Tuple[str, int]]:
    """Read a VTAB-1k list file, one ``<relative image path> <class id>`` a line.

    Blank lines carry no sample and are allowed; anything else that is not exactly a path and
    an integer id in ``[0, num_classes)`` is an error, as is a path listed twice.

    Returns:
        ``(relative image path, class id)`` in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file has no sample, or a line is malformed (message ``path:line``).
    """
    backend = backend or get_file_backend(path)
    if not backend.exists(path):
        raise FileNotFoundError(f'split file not found: {path}')
    samples, first_line = [], {}
    for lineno, line in enumerate(backend.get_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f'{path}:{lineno}'
        if len(fields) != 2:
            raise ValueError(f'{where}: expected "<image path> <class id>", got {line!r}')
        rel_path, label = fields
        try:
            label = int(label)
        except ValueError:
            raise ValueError(f'{where}: class id {label!r} is not an integer') from None
        check_label(label, num_classes, where)
        if rel_path in first_line:
            raise ValueError(f'{where}: image {rel_path!r} already listed on line '
                             f'{first_line[rel_path]}')
        first_line[rel_path] = lineno
        samples.append((rel_path, label))
    if not samples:
        raise ValueError(f'{path}: split file is empty (no samples)')
    return samples


@DATASETS.register_module()
class VTAB1kDataset(BaseDataset):
    """One VTAB-1k task: ``{data_root}/{task}/{train800,val200,train800val200,test}.txt``.

    Each line is ``images/train800/000000.jpg 307``: an image path relative to the task
    directory and a class id. The 19 VTAB tasks know their number of classes and group
    (natural / specialized / structured); another task (e.g. the offline Animal-MNIST demo)
    needs ``num_classes`` or ``classes``, or a ``classes.txt`` (one name a line) in its directory.

    Args:
        data_root: the directory holding one folder per task.
        task: the task folder name, e.g. ``'cifar'``.
        split: ``'train800'``, ``'val200'``, ``'train800val200'`` or ``'test'``.
        num_classes: required for a task outside the 19, checked against the table otherwise.
        classes: class names (a sequence, or a file with one name a line); defaults to the
            class ids as strings (the 19 tasks) or the task's ``classes.txt``.
        allow_missing_classes: for the training splits, warn instead of raising when a class
            has no sample. ``None``: False except for tasks whose standard split is known to
            miss classes (sun397), which warn.
        **kwargs: passed to :class:`mmpretrain.datasets.BaseDataset` (``pipeline``,
            ``test_mode``, ``indices``, ``metainfo``, ...).

    Attributes:
        group: the VTAB group of the task, ``None`` for a task outside the 19.
    """

    def __init__(self,
                 data_root: str,
                 task: str,
                 split: str = 'train800',
                 num_classes: Optional[int] = None,
                 classes: Union[str, Sequence[str], None] = None,
                 allow_missing_classes: Optional[bool] = None,
                 **kwargs):
        if split not in VTAB_SPLITS:
            raise ValueError(f'split must be one of {VTAB_SPLITS}, got {split!r}')
        self.task = task
        self.split = split
        self.backend = get_file_backend(data_root, enable_singleton=True)
        task_dir = self.backend.join_path(data_root, task)
        self.group, known_num_classes = VTAB_TASKS.get(task, (None, None))

        metainfo = kwargs.pop('metainfo', None) or {}
        if classes is None and 'classes' not in metainfo and known_num_classes is None \
                and num_classes is None:
            classes = self.backend.join_path(task_dir, 'classes.txt')
            if not self.backend.exists(classes):
                raise ValueError(f'{task!r} is not one of the 19 VTAB tasks and {classes} does '
                                 'not exist: pass num_classes or classes')
        metainfo = dict(self._compat_classes(metainfo, classes))
        if 'classes' in metainfo:
            num_classes = num_classes or len(metainfo['classes'])
        num_classes = num_classes or known_num_classes
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'num_classes must be a positive integer, got {num_classes!r}')
        if known_num_classes is not None and num_classes != known_num_classes:
            raise ValueError(f'VTAB task {task!r} has {known_num_classes} classes, '
                             f'got num_classes/classes for {num_classes}')
        metainfo.setdefault('classes', tuple(str(i) for i in range(num_classes)))
        if len(metainfo['classes']) != num_classes:
            raise ValueError(f'num_classes={num_classes} but {len(metainfo["classes"])} class '
                             'names were given')
        self.num_classes = num_classes
        if allow_missing_classes is None:
            allow_missing_classes = task in TASKS_WITH_MISSING_CLASSES
        self.allow_missing_classes = allow_missing_classes

        super().__init__(
            ann_file=f'{task}/{split}.txt',
            data_root=data_root,
            data_prefix=task,
            metainfo=metainfo,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read the split file into ``dict(img_path=..., gt_label=...)`` items."""
        samples = load_txt_split(self.ann_file, self.num_classes, self.backend)
        if self.split in TRAIN_SPLITS:
            check_class_coverage((label for _, label in samples), self.metainfo['classes'],
                                 self.ann_file, self.allow_missing_classes)
        return [
            dict(img_path=self.backend.join_path(self.img_prefix, rel_path), gt_label=label)
            for rel_path, label in samples
        ]

    def extra_repr(self) -> List[str]:
        """Task, group, split file and image root, for ``repr``."""
        task = f'Task: \t{self.task} ({self.group or "not a VTAB task"})'
        return [task, *super().extra_repr()]
