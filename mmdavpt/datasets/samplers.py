"""Class-balanced P x K sampling: every batch holds P classes with K images each.

The official DA-VPT code trains every run from such batches (``Dataset/class_sampler.py``,
``ClassSampler``: 16 classes x 2 images for a batch of 32, ``class_sampler: true`` and
``samples_per_class`` in its configs): the proxy-anchor losses then see positives for many
prompts in every batch.
"""
from collections import Counter
from typing import Iterator, List, Optional, Sized

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from mmpretrain.registry import DATA_SAMPLERS
from torch.utils.data import Sampler


def dataset_labels(dataset: Sized) -> np.ndarray:
    """The single class label of every sample, read without loading any image.

    Uses MMPretrain's ``get_gt_labels()`` when the dataset has it, else ``get_cat_ids(idx)``
    (MMEngine's dataset wrappers). Multi-label samples are refused.
    """
    if hasattr(dataset, 'get_gt_labels'):
        labels = [np.asarray(label).reshape(-1) for label in dataset.get_gt_labels()]
    elif hasattr(dataset, 'get_cat_ids'):
        labels = [np.asarray(dataset.get_cat_ids(i)).reshape(-1) for i in range(len(dataset))]
    else:
        raise TypeError(f'{type(dataset).__name__} has neither get_gt_labels() nor '
                        'get_cat_ids(idx): a class-balanced sampler needs the labels without '
                        'loading the images (use an MMPretrain BaseDataset)')
    bad = [i for i, label in enumerate(labels) if label.size != 1]
    if bad:
        raise ValueError(f'{type(dataset).__name__}: samples {bad[:5]} do not have exactly one '
                         'label; class-balanced sampling needs single-label classification')
    return np.array([int(label[0]) for label in labels], dtype=np.int64)


@DATA_SAMPLERS.register_module()
class ClassBalancedSampler(Sampler):
    """P x K sampler: each run of ``batch_size`` indices is P classes x K images of each.

    Use it as the train ``sampler`` with the same ``batch_size`` as the dataloader (the index
    stream is batch-aligned; the dataloader cuts it into batches; a different dataloader batch
    size would cut across the P x K groups)::

        train_dataloader = dict(
            batch_size=32,
            sampler=dict(type='ClassBalancedSampler', batch_size=32, samples_per_class=2))

    A batch: P = ``batch_size / samples_per_class`` classes drawn without replacement when
    P <= C (otherwise every class ``P // C`` times plus ``P % C`` distinct others, as the
    official ``ClassSampler``), then K images per draw of a class, distinct within the batch
    when the class has enough. Images come from a per-class shuffled queue that is refilled
    (reshuffled) only when it runs dry, so a class's images are all used before any repeats.
    An epoch has ``len(dataset) // (batch_size * world_size)`` batches per rank (at least one),
    i.e. about one pass over the data in all, as the official ``num_imgs // batch_size``.

    Seed and epoch follow :class:`mmengine.dataset.DefaultSampler`: the draws come from a
    ``torch.Generator`` seeded with ``seed + epoch`` (``seed=None``: a seed synchronised over
    the ranks), and ``set_epoch`` (called by ``DistSamplerSeedHook`` and the iteration-based
    loop) changes the draws of the next epoch. Under DDP every rank draws the same global
    sequence of batches and takes every ``world_size``-th batch, starting at its rank: the ranks
    get distinct batches, the same number of them, and together they see what one process
    would see with ``world_size`` times as many batches.

    Why a ``sampler`` and not a ``batch_sampler``: with a batch sampler MMEngine builds the
    ``DataLoader`` with ``batch_size=None``, and code that reads the train loader's
    ``batch_size`` (mmdavpt's ``SemanticMappingHook`` builds its initial-pass loader from it)
    would break.

    Why not a library sampler: pytorch-metric-learning's ``MPerClassSampler`` and Catalyst's
    ``BatchBalanceClassSampler`` draw from a global random state and know neither the rank nor
    the epoch, so under DDP with MMEngine's shared seed every rank would draw the same batches
    (and Catalyst is unmaintained since 2022); neither follows MMEngine's seed/``set_epoch``.

    Args:
        dataset: the training dataset (labels from ``get_gt_labels()`` or ``get_cat_ids``).
        batch_size: B, the dataloader's batch size (per rank); a multiple of K.
        samples_per_class: K, images of each class in a batch (official default 2).
        seed: random seed, the same on every rank (MMEngine's runner passes ``randomness.seed``).
        rank, world_size: this process's rank and the number of processes; ``None``: from
            :func:`mmengine.dist.get_dist_info`.
    """

    def __init__(self, dataset: Sized, batch_size: int, samples_per_class: int = 2,
                 seed: Optional[int] = None, rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> None:
        if samples_per_class < 1 or batch_size < 1 or batch_size % samples_per_class:
            raise ValueError(f'batch_size ({batch_size}) must be a positive multiple of '
                             f'samples_per_class ({samples_per_class})')
        dist_rank, dist_world_size = get_dist_info()
        self.rank = dist_rank if rank is None else rank
        self.world_size = dist_world_size if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f'rank {self.rank} is not in [0, world_size={self.world_size})')
        self.dataset = dataset
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.classes_per_batch = batch_size // samples_per_class
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0
        labels = dataset_labels(dataset)
        if labels.size == 0:
            raise ValueError('ClassBalancedSampler got an empty dataset')
        self.class_indices: List[np.ndarray] = [
            np.flatnonzero(labels == c) for c in np.unique(labels)]
        self.num_batches = max(1, len(labels) // (batch_size * self.world_size))

    def _draw_classes(self, g: torch.Generator) -> List[int]:
        """P class slots (positions in ``class_indices``) for one batch."""
        num_classes = len(self.class_indices)
        repeats, rest = divmod(self.classes_per_batch, num_classes)
        slots = list(range(num_classes)) * repeats
        return slots + torch.randperm(num_classes, generator=g)[:rest].tolist()

    def _take(self, c: int, n: int, queues: List[List[int]], g: torch.Generator) -> List[int]:
        """``n`` images of class slot ``c`` from its queue, refilled with a new permutation when
        it runs dry; images already taken here go to the end of the refill, so the ``n`` are
        distinct whenever the class has at least ``n`` images."""
        taken: List[int] = []
        while len(taken) < n:
            if not queues[c]:
                order = torch.randperm(len(self.class_indices[c]), generator=g).numpy()
                fresh = self.class_indices[c][order].tolist()
                queues[c] = [i for i in fresh if i in taken] + [i for i in fresh
                                                                if i not in taken]
            taken.append(queues[c].pop())
        return taken

    def global_batches(self) -> List[List[int]]:
        """All ranks' batches of this epoch, in order (rank r takes batches r, r + W, ...)."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        queues: List[List[int]] = [[] for _ in self.class_indices]
        batches = []
        for _ in range(self.num_batches * self.world_size):
            slots = Counter(self._draw_classes(g))  # class -> times drawn, in draw order
            batches.append([i for c, times in slots.items()
                            for i in self._take(c, times * self.samples_per_class, queues, g)])
        return batches

    def __iter__(self) -> Iterator[int]:
        for batch in self.global_batches()[self.rank::self.world_size]:
            yield from batch

    def __len__(self) -> int:
        """Indices on this rank: ``num_batches * batch_size``."""
        return self.num_batches * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Use the draws of ``epoch`` from the next iteration on (as ``DefaultSampler``)."""
        self.epoch = epoch
