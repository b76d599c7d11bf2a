"""The real-layout trees of :mod:`mmdavpt_lab.real_layouts`, read by the datasets of the shipped
configs: MMSeg's ``ADE20KDataset`` / ``PascalContextDataset(59)``, ``VTAB1kDataset`` and
``VPTFGVCDataset``."""
import filecmp
import os
import os.path as osp
import re

import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile
from mmseg.datasets import ADE20KDataset, PascalContextDataset, PascalContextDataset59
from mmseg.datasets.transforms import LoadAnnotations
from PIL import Image

from mmdavpt.datasets import FGVC_DATASETS, VTAB_TASKS, VPTFGVCDataset, VTAB1kDataset
from mmdavpt_lab.real_layouts import (
    ADE20K_CLASSES,
    ADE20K_SIZE,
    FGVC_LAYOUTS,
    PASCAL_CONTEXT_CLASSES,
    VTAB_IMAGE_SIZES,
    VTAB_NUM_CLASSES,
    build_ade20k,
    build_fgvc,
    build_pascal_context,
    build_vtab1k,
)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_tables_agree_with_the_package_and_the_configs():
    assert VTAB_NUM_CLASSES == {task: n for task, (_, n) in VTAB_TASKS.items()}
    assert set(VTAB_IMAGE_SIZES) == set(VTAB_TASKS)
    assert {name: (root, n) for name, (_, root, n, _) in FGVC_LAYOUTS.items()} == FGVC_DATASETS
    # the folder each builder writes is the one the dataset config names
    for name, (folder, *_) in FGVC_LAYOUTS.items():
        with open(osp.join(ROOT, 'configs', '_base_', 'datasets', 'fgvc', f'{name}.py')) as f:
            data_root = re.search(r"^data_root = '(.*)'$", f.read(), re.M).group(1)
        assert osp.basename(data_root) == folder


def _loaded(dataset, index):
    """Image and annotation of a sample, loaded as the configs' pipelines load them."""
    results = LoadImageFromFile()(dataset.get_data_info(index))
    return LoadAnnotations()(results)


def test_ade20k_tree_is_read_by_mmseg_with_its_label_convention(tmp_path):
    data_root = build_ade20k(str(tmp_path), num_train=3, num_val=2)
    assert data_root == str(tmp_path / 'ADEChallengeData2016')
    annotation = osp.join(data_root, 'annotations', 'training', 'ADE_train_00000001.png')
    raw = np.unique(np.asarray(Image.open(annotation)))
    assert 0 in raw and set(raw) <= {0, *ADE20K_CLASSES}
    for split, count in (('training', 3), ('validation', 2)):
        dataset = ADE20KDataset(data_root=data_root, data_prefix=dict(
            img_path=f'images/{split}', seg_map_path=f'annotations/{split}'))
        assert len(dataset) == count
        results = _loaded(dataset, 0)
        assert results['img'].shape == (ADE20K_SIZE[1], ADE20K_SIZE[0], 3)
        labels = set(np.unique(results['gt_seg_map']).tolist())
        # reduce_zero_label: ADE id k is class k - 1, 0 ("other") is ignored
        assert 255 in labels and labels - {255} <= {c - 1 for c in ADE20K_CLASSES}


def test_pascal_context_tree_goes_by_its_split_files(tmp_path):
    data_root = build_pascal_context(str(tmp_path), num_train=3, num_val=2)
    assert data_root == str(tmp_path / 'VOCdevkit' / 'VOC2010')
    # JPEGImages holds an image that no split lists, as in VOC2010
    assert len(os.listdir(osp.join(data_root, 'JPEGImages'))) == 6
    prefix = dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext')
    for split, count in (('train', 3), ('val', 2)):
        ann_file = f'ImageSets/SegmentationContext/{split}.txt'
        ds59 = PascalContextDataset59(data_root=data_root, data_prefix=prefix, ann_file=ann_file)
        ds60 = PascalContextDataset(data_root=data_root, data_prefix=prefix, ann_file=ann_file)
        assert len(ds59) == len(ds60) == count
        labels59 = set(np.unique(_loaded(ds59, 0)['gt_seg_map']).tolist())
        labels60 = set(np.unique(_loaded(ds60, 0)['gt_seg_map']).tolist())
        # 60 classes: background is class 0; 59: it is ignored and class k is k - 1
        assert 0 in labels60 and labels60 <= {0, *PASCAL_CONTEXT_CLASSES}
        assert labels59 == {255} | {c - 1 for c in labels60 - {0}}


def test_vtab1k_tree_reads_every_split(tmp_path):
    data_root = build_vtab1k(str(tmp_path), tasks=('kitti', 'eurosat'), num_val=3, num_test=2)
    assert data_root == str(tmp_path / 'vtab-1k')
    for task, num_classes in (('kitti', 4), ('eurosat', 10)):
        splits = {split: VTAB1kDataset(data_root, task, split=split)
                  for split in ('train800', 'val200', 'train800val200', 'test')}
        train = [d['gt_label'] for d in splits['train800']]
        # by default one image per class, at least 8
        assert sorted(set(train)) == list(range(num_classes)) and len(train) == max(
            num_classes, 8)
        assert len(splits['val200']) == 3 and len(splits['test']) == 2
        assert [d['img_path'] for d in splits['train800val200']] == \
            [d['img_path'] for d in splits['train800']] + [d['img_path'] for d in
                                                           splits['val200']]
        img = LoadImageFromFile()(splits['test'][0])['img']
        assert img.shape[1::-1] == VTAB_IMAGE_SIZES[task]
    with open(osp.join(data_root, 'kitti', 'train800.txt')) as f:
        assert f.readline() == 'images/train800/000000.jpg 0\n'


def test_vtab1k_needs_every_class_in_training(tmp_path):
    with pytest.raises(ValueError, match=r'num_train \(eurosat, 10 classes\)'):
        build_vtab1k(str(tmp_path), tasks=('eurosat', ), num_train=4)
    with pytest.raises(ValueError, match='tasks must be VTAB-1k tasks'):
        build_vtab1k(str(tmp_path), tasks=('imagenet', ))


@pytest.mark.parametrize('name', sorted(FGVC_LAYOUTS))
def test_fgvc_tree_reads_with_vpt_json_splits(name, tmp_path):
    data_root = build_fgvc(str(tmp_path), name, num_val=3, num_test=2, size=(24, 16))
    image_root, num_classes = FGVC_DATASETS[name]
    assert data_root == str(tmp_path / FGVC_LAYOUTS[name][0])
    train = VPTFGVCDataset(data_root, name, split='train')
    assert sorted(d['gt_label'] for d in train) == list(range(num_classes))
    assert len(VPTFGVCDataset(data_root, name, split='trainval')) == num_classes + 3
    test = VPTFGVCDataset(data_root, name, split='test')
    assert len(test) == 2
    assert osp.dirname(test[0]['img_path']).startswith(osp.join(data_root, image_root))
    assert LoadImageFromFile()(test[0])['img'].shape == (16, 24, 3)


def test_trees_are_deterministic_and_never_overwritten(tmp_path):
    first = build_ade20k(str(tmp_path / 'a'), num_train=1, num_val=1, size=(64, 48))
    again = build_ade20k(str(tmp_path / 'b'), num_train=1, num_val=1, size=(64, 48))
    other = build_ade20k(str(tmp_path / 'c'), num_train=1, num_val=1, size=(64, 48), seed=1)
    image = osp.join('images', 'training', 'ADE_train_00000001.jpg')
    assert filecmp.cmp(osp.join(first, image), osp.join(again, image), shallow=False)
    assert not filecmp.cmp(osp.join(first, image), osp.join(other, image), shallow=False)
    with pytest.raises(FileExistsError, match='already exists'):
        build_ade20k(str(tmp_path / 'a'))
    build_vtab1k(str(tmp_path / 'v'), tasks=('dmlab', ), size=(8, 8))
    with pytest.raises(FileExistsError):
        build_vtab1k(str(tmp_path / 'v'), tasks=('dmlab', ))
