"""ClassBalancedSampler: P x K batches, deterministic per seed and epoch, correct under DDP."""
from collections import Counter

import numpy as np
import pytest
from mmengine.dataset import BaseDataset as EngineDataset
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.datasets import BaseDataset

from mmdavpt.datasets import ClassBalancedSampler, dataset_labels


class LabelsOnly(BaseDataset):
    """An MMPretrain dataset of labels whose images must never be loaded."""

    def __init__(self, labels):
        self._labels = list(labels)
        super().__init__(ann_file='', lazy_init=True, serialize_data=False)

    def load_data_list(self):
        return [dict(img_path=f'{i}.png', gt_label=c) for i, c in enumerate(self._labels)]

    def prepare_data(self, idx):
        raise AssertionError('the sampler loaded an image')


def balanced(num_classes=10, per_class=8):
    return LabelsOnly(np.repeat(np.arange(num_classes), per_class))


def batches(sampler):
    idx = list(sampler)
    assert len(idx) == len(sampler)
    return [idx[i:i + sampler.batch_size] for i in range(0, len(idx), sampler.batch_size)]


def test_batches_are_p_classes_times_k_images():
    data = LabelsOnly([c for c in range(12) for _ in range(3 + c)])  # unbalanced, 3..14 each
    labels = dataset_labels(data)
    sampler = ClassBalancedSampler(data, batch_size=12, samples_per_class=3, seed=0)
    assert sampler.num_batches == len(data) // 12
    for batch in batches(sampler):
        counts = Counter(labels[batch].tolist())
        assert len(counts) == 4 and set(counts.values()) == {3}
        assert len(set(batch)) == 12  # no image twice in a batch (every class has >= 3)


def test_more_class_slots_than_classes_repeat_every_class():
    """The official 16 x 2 batch on a 10-class task: every class once, 6 of them twice."""
    data = balanced(10, 20)
    labels = dataset_labels(data)
    for batch in batches(ClassBalancedSampler(data, batch_size=32, samples_per_class=2, seed=0)):
        counts = Counter(labels[batch].tolist())
        assert len(counts) == 10 and sorted(counts.values()) == [2] * 4 + [4] * 6
        assert len(set(batch)) == 32


def test_images_of_a_class_are_used_before_any_repeats():
    data = balanced(4, 6)  # 24 images, 4 classes
    sampler = ClassBalancedSampler(data, batch_size=8, samples_per_class=2, seed=3)
    assert sampler.num_batches == 3
    assert sorted(sum(batches(sampler), [])) == list(range(24))  # one epoch = every image once


def test_deterministic_for_a_seed_and_changes_with_epoch_and_seed():
    data = balanced()

    def draw(seed, epoch):
        sampler = ClassBalancedSampler(data, batch_size=8, samples_per_class=2, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(0, 0) == draw(0, 0)
    assert draw(0, 0) != draw(0, 1)
    assert draw(0, 0) != draw(1, 0)
    assert draw(0, 1) == draw(0, 1)


@pytest.mark.parametrize('world_size', [2, 3])
def test_ranks_get_distinct_batches_of_one_global_stream(world_size):
    # 2 classes x 12 images, batches of 2 classes x 2: one epoch in all uses every image once
    data = balanced(2, 12)
    single = ClassBalancedSampler(data, batch_size=4, samples_per_class=2, seed=5, rank=0,
                                  world_size=1)
    ranks = [ClassBalancedSampler(data, batch_size=4, samples_per_class=2, seed=5, rank=r,
                                  world_size=world_size) for r in range(world_size)]
    per_rank = [batches(s) for s in ranks]
    assert len({len(b) for b in per_rank}) == 1  # same number of batches on every rank
    assert len(per_rank[0]) == 24 // (4 * world_size)
    global_order = [per_rank[r][i] for i in range(len(per_rank[0])) for r in range(world_size)]
    assert global_order == ranks[0].global_batches()
    # round-robin of the ranks = the stream of one process with as many batches in all
    assert global_order == batches(single)[:len(global_order)]
    assert sorted(sum(global_order, [])) == list(range(24))  # no image on two ranks


def test_built_by_the_runner_from_a_config_with_its_seed():
    data = balanced()
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loader = Runner.build_dataloader(
            dict(batch_size=8, num_workers=0, dataset=data,
                 sampler=dict(type='ClassBalancedSampler', batch_size=8, samples_per_class=2),
                 collate_fn=dict(type='default_collate')), seed=7)
    sampler = loader.sampler
    assert isinstance(sampler, ClassBalancedSampler) and sampler.seed == 7
    assert len(loader) == sampler.num_batches
    assert list(loader.batch_sampler) == batches(
        ClassBalancedSampler(data, batch_size=8, samples_per_class=2, seed=7))


def test_labels_from_get_cat_ids_and_bad_input():
    class CatIds(EngineDataset):
        def __init__(self, cat_ids):
            self.cat_ids = cat_ids
            super().__init__(lazy_init=True, serialize_data=False)

        def load_data_list(self):
            return [dict() for _ in self.cat_ids]

        def get_cat_ids(self, idx):
            return self.cat_ids[idx]

    assert dataset_labels(CatIds([[1], [0], [1]])).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match='exactly one label'):
        dataset_labels(CatIds([[1], [0, 2]]))
    with pytest.raises(TypeError, match='get_gt_labels'):
        dataset_labels([1, 2, 3])
    with pytest.raises(ValueError, match='multiple of samples_per_class'):
        ClassBalancedSampler(balanced(), batch_size=9, samples_per_class=2)
    with pytest.raises(ValueError, match='rank 2'):
        ClassBalancedSampler(balanced(), batch_size=8, rank=2, world_size=2)
