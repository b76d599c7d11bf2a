"""Datasets, strict transforms and the Animal-MNIST demo builder."""
import hashlib
import json
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from mmpretrain.datasets.transforms import PackInputs
from mmpretrain.registry import DATASETS as PRETRAIN_DATASETS
from mmpretrain.registry import TRANSFORMS as PRETRAIN_TRANSFORMS
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import DATASETS as SEG_DATASETS
from mmseg.registry import TRANSFORMS as SEG_TRANSFORMS
from PIL import Image

from mmdavpt.datasets import (
    ANIMAL_MNIST_CLASSES,
    FGVC_DATASETS,
    VTAB_TASKS,
    AnimalMNISTSegDataset,
    CheckSegMask,
    ImageDecodeError,
    LoadImageFromFileStrict,
    VPTFGVCDataset,
    VTAB1kDataset,
)
from mmdavpt_lab import demo_data
from mmdavpt_lab.demo_data import PER_CLASS, prepare_demo_data, split_indices


def write_image(path, value=0, size=(8, 6), fmt=None):
    """A tiny RGB image of one colour; the format follows the suffix unless given."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.new('RGB', size, (value, 255 - value, 7)).save(path, format=fmt)


def write_text(path, text):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def fgvc(*args, **kwargs):
    """VPTFGVCDataset without serialization, whose gc.collect costs ~0.3 s a dataset."""
    return VPTFGVCDataset(*args, serialize_data=False, **kwargs)


def vtab(*args, **kwargs):
    """VTAB1kDataset without serialization, whose gc.collect costs ~0.3 s a dataset."""
    return VTAB1kDataset(*args, serialize_data=False, **kwargs)


def strict_pipeline():
    return [LoadImageFromFileStrict(), PackInputs()]


# --------------------------------------------------------------------------- registration


def test_registered_names():
    assert PRETRAIN_DATASETS.module_dict['VPTFGVCDataset'] is VPTFGVCDataset
    assert PRETRAIN_DATASETS.module_dict['VTAB1kDataset'] is VTAB1kDataset
    assert SEG_DATASETS.module_dict['AnimalMNISTSegDataset'] is AnimalMNISTSegDataset
    assert PRETRAIN_TRANSFORMS.module_dict['LoadImageFromFileStrict'] is LoadImageFromFileStrict
    assert SEG_TRANSFORMS.module_dict['LoadImageFromFileStrict'] is LoadImageFromFileStrict
    assert SEG_TRANSFORMS.module_dict['CheckSegMask'] is CheckSegMask


def test_vtab_table():
    assert len(VTAB_TASKS) == 19
    groups = [group for group, _ in VTAB_TASKS.values()]
    assert (groups.count('natural'), groups.count('specialized'),
            groups.count('structured')) == (7, 4, 8)
    assert {t: VTAB_TASKS[t][1] for t in ('cifar', 'sun397', 'patch_camelyon', 'clevr_count',
                                          'kitti', 'smallnorb_azi', 'smallnorb_ele')} == {
        'cifar': 100, 'sun397': 397, 'patch_camelyon': 2, 'clevr_count': 8, 'kitti': 4,
        'smallnorb_azi': 18, 'smallnorb_ele': 9}


# --------------------------------------------------------------------------- FGVC


def make_fgvc(root, name, num_classes=None, per_split=None):
    """VPT-style json splits: every class in train, two in val, three in test (no images)."""
    image_root, n = FGVC_DATASETS[name]
    n = num_classes or n
    splits = per_split or {
        'train': {f'c{c}/tr{c}.jpg': c for c in range(n)},
        'val': {'c0/va0.jpg': 0, 'c1/va1.jpg': 1},
        'test': {'c0/te0.jpg': 0, 'c1/te1.jpg': 1, 'c2/te2.jpg': 2},
    }
    for split, content in splits.items():
        write_text(osp.join(root, f'{split}.json'), json.dumps(content))
    return osp.join(root, image_root) if image_root else root


@pytest.mark.parametrize('name', sorted(FGVC_DATASETS))
def test_fgvc_splits_and_image_roots(tmp_path, name):
    root = str(tmp_path)
    img_root = make_fgvc(root, name)
    num_classes = FGVC_DATASETS[name][1]
    lengths = {}
    for split in ('train', 'val', 'trainval', 'test'):
        ds = fgvc(root, name, split)
        lengths[split] = len(ds)
        assert len(ds.metainfo['classes']) == ds.num_classes == num_classes
    assert lengths == {'train': num_classes, 'val': 2, 'trainval': num_classes + 2, 'test': 3}
    info = fgvc(root, name, 'test').get_data_info(2)
    assert osp.normpath(info['img_path']) == osp.join(img_root, 'c2', 'te2.jpg')
    assert info['gt_label'] == 2


def test_fgvc_loads_through_pipeline(tmp_path):
    root = str(tmp_path)
    split = {'a/0.jpg': 0, 'b/1.jpg': 1}
    make_fgvc(root, 'cub', per_split={'test': split})
    for i, rel in enumerate(split):
        write_image(osp.join(root, 'images', rel), value=100 * i)
    ds = fgvc(root, 'cub', 'test', pipeline=strict_pipeline(), test_mode=True)
    sample = ds[1]
    assert tuple(sample['inputs'].shape) == (3, 6, 8)
    assert sample['data_samples'].gt_label.tolist() == [1]


def test_fgvc_classes_and_remap(tmp_path):
    root = str(tmp_path)
    # 1-based, as some split files are: rejected by default, mapped with remap_labels
    one_based = {f'x/{c}.jpg': c + 1 for c in range(102)}
    make_fgvc(root, 'oxford_flowers', per_split={'train': one_based, 'test': {'y.jpg': 102}})
    with pytest.raises(ValueError, match=r'train\.json: key .*class id 102 is outside'):
        fgvc(root, 'oxford_flowers', 'train')
    ds = fgvc(root, 'oxford_flowers', 'test', remap_labels=True)
    assert ds.get_data_info(0)['gt_label'] == 101
    names = [f'flower{c}' for c in range(102)]
    ds = fgvc(root, 'oxford_flowers', 'test', remap_labels=True, classes=names)
    assert ds.metainfo['classes'][101] == 'flower101'
    with pytest.raises(ValueError, match='102 classes, but 3 class names'):
        fgvc(root, 'oxford_flowers', 'test', remap_labels=True, classes=['a', 'b', 'c'])


@pytest.mark.parametrize('content, split, error, pattern', [
    (None, 'val', FileNotFoundError, r'split file not found: .*val\.json'),
    ('', 'test', ValueError, r'test\.json: split file is empty'),
    ('{}', 'test', ValueError, r'test\.json: split file is empty \(no samples\)'),
    ('{"a.jpg": 0,\n "b.jpg" 1}', 'test', ValueError, r'test\.json:2:\d+: malformed JSON'),
    ('["a.jpg", 0]', 'test', ValueError, r'test\.json: expected a JSON object'),
    ('{"a.jpg": "3"}', 'test', ValueError, r"test\.json: key 'a\.jpg': class id '3' is not"),
    ('{"a.jpg": 200}', 'test', ValueError, r"test\.json: key 'a\.jpg': class id 200 is outs"),
    ('{"a.jpg": -1}', 'test', ValueError, r'class id -1 is outside \[0, 200\)'),
    ('{"a.jpg": 0, "a.jpg": 1}', 'test', ValueError, r"test\.json: image 'a\.jpg' is listed"),
])
def test_fgvc_split_file_errors(tmp_path, content, split, error, pattern):
    root = str(tmp_path)
    if content is not None:
        write_text(osp.join(root, f'{split}.json'), content)
    with pytest.raises(error, match=pattern):
        fgvc(root, 'cub', split)


def test_fgvc_trainval_duplicate_and_missing_classes(tmp_path):
    root = str(tmp_path)
    train = {f'{c}.jpg': c for c in range(120) if c not in (5, 77)}
    make_fgvc(root, 'stanford_dogs', per_split={'train': train, 'val': {'5.jpg': 5},
                                                'test': {'t.jpg': 0}})
    with pytest.raises(ValueError, match=r'train\.json: 2 of 120 classes have no training '
                       r'sample: 5 \(5\), 77 \(77\)\. Pass allow_missing_classes=True'):
        fgvc(root, 'stanford_dogs', 'train')
    with pytest.warns(UserWarning, match=r'1 of 120 classes .*: 77 \(77\)'):
        ds = fgvc(root, 'stanford_dogs', 'trainval', allow_missing_classes=True)
    assert len(ds) == 119
    assert len(fgvc(root, 'stanford_dogs', 'test')) == 1  # no coverage check
    write_text(osp.join(root, 'val.json'), json.dumps({'0.jpg': 0}))
    with pytest.raises(ValueError, match=r"val\.json: key '0\.jpg': image also listed in .*"
                       r'train\.json'):
        fgvc(root, 'stanford_dogs', 'trainval', allow_missing_classes=True)


def test_fgvc_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='dataset_name must be one of'):
        fgvc(str(tmp_path), 'aircraft')
    with pytest.raises(ValueError, match='split must be one of'):
        fgvc(str(tmp_path), 'cub', 'train800')


# --------------------------------------------------------------------------- VTAB-1k


def make_vtab(root, task, num_classes, files=('train800', 'val200', 'train800val200', 'test'),
              write_images=False):
    """One line per class in every list file, paths like the shared VTAB-1k extraction."""
    for split in files:
        lines = []
        for c in range(num_classes):
            rel = f'images/{split}/{c:06d}.jpg'
            lines.append(f'{rel} {c}')
            if write_images:
                write_image(osp.join(root, task, rel), value=c)
        write_text(osp.join(root, task, f'{split}.txt'), '\n'.join(lines) + '\n')


def test_vtab_known_task(tmp_path):
    root = str(tmp_path)
    make_vtab(root, 'dtd', 47, write_images=True)
    ds = vtab(root, 'dtd', 'train800', pipeline=strict_pipeline())
    assert (len(ds), ds.num_classes, ds.group) == (47, 47, 'natural')
    assert len(ds.metainfo['classes']) == 47
    info = ds.get_data_info(3)
    assert osp.normpath(info['img_path']) == osp.join(root, 'dtd', 'images', 'train800',
                                                      '000003.jpg')
    assert info['gt_label'] == 3
    assert tuple(ds[3]['inputs'].shape) == (3, 6, 8)
    assert ds[3]['data_samples'].gt_label.tolist() == [3]
    assert vtab(root, 'dtd', 'test').group == 'natural'
    with pytest.raises(ValueError, match="'dtd' has 47 classes, got num_classes/classes for 10"):
        vtab(root, 'dtd', num_classes=10)


def test_vtab_custom_task(tmp_path):
    root = str(tmp_path)
    make_vtab(root, 'shapes', 3)
    with pytest.raises(ValueError, match=r"'shapes' is not one of the 19 .*classes\.txt does"):
        vtab(root, 'shapes')
    ds = vtab(root, 'shapes', num_classes=3)
    assert (len(ds), ds.group, ds.metainfo['classes']) == (3, None, ('0', '1', '2'))
    ds = vtab(root, 'shapes', classes=['o', 'x', '+'])
    assert ds.metainfo['classes'] == ('o', 'x', '+')
    write_text(osp.join(root, 'shapes', 'classes.txt'), 'circle\ncross\nplus\n')
    ds = vtab(root, 'shapes', 'train800val200')
    assert ds.metainfo['classes'] == ('circle', 'cross', 'plus')
    with pytest.raises(ValueError, match='num_classes=4 but 3 class names'):
        vtab(root, 'shapes', num_classes=4, classes=['o', 'x', '+'])
    with pytest.raises(ValueError, match="split must be one of"):
        vtab(root, 'shapes', 'train')


@pytest.mark.parametrize('text, error, pattern', [
    (None, FileNotFoundError, r'split file not found: .*clevr_dist/test\.txt'),
    ('', ValueError, r'clevr_dist/test\.txt: split file is empty'),
    ('\n  \n', ValueError, r'clevr_dist/test\.txt: split file is empty'),
    ('a.jpg 0\nb.jpg\n', ValueError, r'clevr_dist/test\.txt:2: expected "<image path> <class'),
    ('a.jpg 0\n\nb.jpg 1 2\n', ValueError, r'test\.txt:3: expected'),
    ('a.jpg 0\nb.jpg one\n', ValueError, r"test\.txt:2: class id 'one' is not an integer"),
    ('a.jpg 1.0\n', ValueError, r"test\.txt:1: class id '1\.0' is not an integer"),
    ('a.jpg 0\nb.jpg 6\n', ValueError, r'test\.txt:2: class id 6 is outside \[0, 6\)'),
    ('a.jpg -1\n', ValueError, r'test\.txt:1: class id -1 is outside'),
    ('a.jpg 0\nb.jpg 1\na.jpg 1\n', ValueError, r"test\.txt:3: image 'a\.jpg' already listed "
     'on line 1'),
])
def test_vtab_split_file_errors(tmp_path, text, error, pattern):
    root = str(tmp_path)
    os.makedirs(osp.join(root, 'clevr_dist'))
    if text is not None:
        write_text(osp.join(root, 'clevr_dist', 'test.txt'), text)
    with pytest.raises(error, match=pattern):
        vtab(root, 'clevr_dist', 'test')


def test_vtab_missing_classes(tmp_path):
    root = str(tmp_path)
    make_vtab(root, 'kitti', 4)
    write_text(osp.join(root, 'kitti', 'train800.txt'), 'a.jpg 0\nb.jpg 2\n')
    with pytest.raises(ValueError, match=r'train800\.txt: 2 of 4 classes have no training '
                       r'sample: 1 \(1\), 3 \(3\)'):
        vtab(root, 'kitti', 'train800')
    with pytest.warns(UserWarning, match='2 of 4 classes'):
        assert len(vtab(root, 'kitti', 'train800', allow_missing_classes=True)) == 2
    write_text(osp.join(root, 'kitti', 'val200.txt'), 'a.jpg 0\n')
    assert len(vtab(root, 'kitti', 'val200')) == 1  # only training splits checked
    # SUN397's standard 800 training images miss classes: warn by default, raise on request
    write_text(osp.join(root, 'sun397', 'train800.txt'), 'a.jpg 0\nb.jpg 396\n')
    with pytest.warns(UserWarning, match=r'395 of 397 classes .*1 \(1\), 2 \(2\).*and 375 more'):
        vtab(root, 'sun397', 'train800')
    with pytest.raises(ValueError, match='395 of 397'):
        vtab(root, 'sun397', 'train800', allow_missing_classes=False)


def test_build_from_config_names(tmp_path):
    root = str(tmp_path)
    make_vtab(root, 'eurosat', 10, files=('val200', ), write_images=True)
    cfg = dict(type='VTAB1kDataset', data_root=root, task='eurosat', split='val200',
               pipeline=[dict(type='LoadImageFromFileStrict'), dict(type='PackInputs')])
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = PRETRAIN_DATASETS.build(cfg)
        assert ds.group == 'specialized'
        assert tuple(ds[9]['inputs'].shape) == (3, 6, 8)


# --------------------------------------------------------------------------- strict loading


@pytest.mark.parametrize('kind, error, pattern', [
    ('missing', FileNotFoundError, 'image file not found: .*bad.png'),
    ('empty', ImageDecodeError, r'image file is empty \(0 bytes\): .*bad\.png'),
    ('garbage', ImageDecodeError, r'cannot decode image file .*bad\.png \(13 bytes\)'),
    ('truncated', ImageDecodeError, r'cannot decode image file .*bad\.png'),
])
def test_strict_loading_names_the_file(tmp_path, kind, error, pattern):
    root = str(tmp_path)
    make_vtab(root, 'svhn', 10, files=('test', ), write_images=True)
    bad = osp.join(root, 'svhn', 'images', 'test', 'bad.png')
    if kind == 'empty':
        open(bad, 'wb').close()
    elif kind == 'garbage':
        with open(bad, 'wb') as f:
            f.write(b'not an image!')
    elif kind == 'truncated':
        write_image(bad, size=(64, 64))
        with open(bad, 'rb') as f:
            data = f.read()
        with open(bad, 'wb') as f:
            f.write(data[:len(data) // 2])
    with open(osp.join(root, 'svhn', 'test.txt'), 'a') as f:
        f.write('images/test/bad.png 3\n')
    # test_mode=False: MMEngine would redraw on a None sample; the strict loader raises
    ds = vtab(root, 'svhn', 'test', pipeline=strict_pipeline(), test_mode=False)
    assert tuple(ds[0]['inputs'].shape) == (3, 6, 8)
    with pytest.raises(error, match=pattern):
        ds[10]


def test_strict_loading_refuses_ignore_empty():
    with pytest.raises(ValueError, match='ignore_empty must be False'):
        LoadImageFromFileStrict(ignore_empty=True)


# --------------------------------------------------------------------------- segmentation


def test_check_seg_labels(tmp_path):
    check = CheckSegMask(num_classes=11)
    mask = np.zeros((4, 5), np.uint8)
    mask[0, :3] = 10
    mask[1, 0] = 255
    assert check(dict(gt_seg_map=mask, seg_map_path='m.png',
                      ori_shape=(4, 5)))['gt_seg_map'] is mask
    mask[2, :2] = 11
    mask[3, 0] = 200
    with pytest.raises(ValueError, match=r'mask m\.png has label values outside \[0, 11\) that '
                       r'are not ignore_index=255: 11 \(2 px\), 200 \(1 px\)'):
        check(dict(gt_seg_map=mask, seg_map_path='m.png', ori_shape=(4, 5)))
    with pytest.raises(ValueError, match=r'-1 \(1 px\)'):
        CheckSegMask(3, ignore_index=None)(dict(gt_seg_map=np.array([[0, -1]]),
                                                seg_map_path='m.png', ori_shape=(1, 2)))


def make_seg(root, mask_values):
    """An AnimalMNISTSegDataset layout with one 4x4 image and mask per value list."""
    os.makedirs(osp.join(root, 'ann_dir', 'train'))
    names = []
    for i, values in enumerate(mask_values):
        name = f'{i:06d}'
        write_image(osp.join(root, 'img_dir', 'train', f'{name}.png'), size=(4, 4))
        mask = np.array(values, np.uint8).reshape(4, 4)
        Image.fromarray(mask).save(osp.join(root, 'ann_dir', 'train', f'{name}.png'))
        names.append(name)
    write_text(osp.join(root, 'splits', 'train.txt'), '\n'.join(names) + '\n')


def seg_dataset(root, ann_file='splits/train.txt', **kwargs):
    pipeline = [LoadImageFromFileStrict(), LoadAnnotations(), CheckSegMask(11)]
    return AnimalMNISTSegDataset(
        data_root=root, ann_file=ann_file, pipeline=pipeline, serialize_data=False,
        data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'), **kwargs)


def test_seg_dataset_and_bad_mask(tmp_path):
    root = str(tmp_path)
    make_seg(root, [[0] * 8 + [10] * 4 + [255] * 4, [0] * 15 + [11]])
    ds = seg_dataset(root)
    assert ds.metainfo['classes'] == ('background', ) + ANIMAL_MNIST_CLASSES
    assert len(ds.metainfo['palette']) == 11 and not ds.reduce_zero_label
    assert np.unique(ds[0]['gt_seg_map']).tolist() == [0, 10, 255]
    with pytest.raises(ValueError, match=r'ann_dir/train/000001\.png has label values outside '
                       r'\[0, 11\) .*: 11 \(1 px\)'):
        ds[1]
    with pytest.raises(FileNotFoundError, match=r'split file not found: .*splits/val\.txt'):
        seg_dataset(root, 'splits/val.txt')
    write_text(osp.join(root, 'splits', 'empty.txt'), '')
    with pytest.raises(ValueError, match=r'no samples in .*splits/empty\.txt'):
        seg_dataset(root, 'splits/empty.txt')


# --------------------------------------------------------------------------- demo data


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('demo'))
    result = prepare_demo_data(out, seed=0)
    assert (result['vtab_status'], result['seg_status']) == ('built', 'built')
    return out, result


def read_list(path):
    with open(path) as f:
        return [line.split() for line in f.read().splitlines()]


def file_digest(paths):
    digest = hashlib.sha256()
    for path in paths:
        with open(path, 'rb') as f:
            digest.update(f.read())
    return digest.hexdigest()


def test_demo_split_indices():
    labels = np.repeat(np.arange(10), 1000)
    parts = split_indices(labels, seed=0)
    sizes = {name: len(idx) for name, idx in parts.items()}
    assert sizes == {name: 10 * n for name, n in PER_CLASS.items()}
    all_idx = np.concatenate(list(parts.values()))
    assert len(np.unique(all_idx)) == len(all_idx)  # disjoint
    for name, idx in parts.items():
        assert (np.bincount(labels[idx], minlength=10) == PER_CLASS[name]).all()
    again = split_indices(labels, seed=0)
    assert all((parts[k] == again[k]).all() for k in parts)
    assert not (split_indices(labels, seed=1)['test'] == parts['test']).all()


def test_demo_vtab_task(demo):
    out, result = demo
    task_dir = result['vtab']
    assert task_dir == osp.join(out, 'animal_mnist_vtab', 'animal_mnist')
    lists = {s: read_list(osp.join(task_dir, f'{s}.txt'))
             for s in ('train800', 'val200', 'train800val200', 'test')}
    expected = {'train800': 80, 'val200': 20, 'train800val200': 100, 'test': 200}
    for split, lines in lists.items():
        counts = np.bincount([int(label) for _, label in lines], minlength=10)
        assert counts.tolist() == [expected[split]] * 10, split
    assert lists['train800val200'] == lists['train800'] + lists['val200']
    paths = {s: {p for p, _ in lines} for s, lines in lists.items()}
    assert not paths['train800'] & paths['val200'] and not paths['val200'] & paths['test']
    assert not paths['train800'] & paths['test']
    with open(osp.join(task_dir, 'classes.txt')) as f:
        assert tuple(f.read().split()) == ANIMAL_MNIST_CLASSES
    img = Image.open(osp.join(task_dir, lists['test'][0][0]))
    assert (img.mode, img.size) == ('RGB', (28, 28))
    ds = VTAB1kDataset(osp.dirname(task_dir), 'animal_mnist', 'train800',
                       pipeline=strict_pipeline())
    assert ds.metainfo['classes'] == ANIMAL_MNIST_CLASSES and len(ds) == 800
    assert tuple(ds[0]['inputs'].shape) == (3, 28, 28)


def test_demo_seg_set(demo):
    _, result = demo
    seg_dir = result['seg']
    for split, n in (('train', 400), ('val', 100)):
        pipeline = [LoadImageFromFileStrict(), LoadAnnotations(), CheckSegMask(11)]
        ds = AnimalMNISTSegDataset(
            data_root=seg_dir, ann_file=f'splits/{split}.txt', pipeline=pipeline,
            data_prefix=dict(img_path=f'img_dir/{split}', seg_map_path=f'ann_dir/{split}'))
        assert len(ds) == n
        sample = ds[0]
        assert sample['img'].shape == (112, 112, 3)
        assert sample['gt_seg_map'].shape == (112, 112)
    present = np.zeros(11, bool)
    for name in sorted(os.listdir(osp.join(seg_dir, 'ann_dir', 'train')))[:100]:
        mask = np.asarray(Image.open(osp.join(seg_dir, 'ann_dir', 'train', name)))
        assert mask.dtype == np.uint8 and mask.max() <= 10 and 1 <= len(np.unique(mask)) - 1 <= 3
        present[np.unique(mask)] = True
    assert present.all()


def test_demo_is_idempotent_and_deterministic(tmp_path, monkeypatch):
    # the full-size build is checked above; here a reduced one, built five times
    monkeypatch.setattr(demo_data, 'PER_CLASS', {'train800': 2, 'val200': 1, 'test': 3,
                                                 'seg_train': 4, 'seg_val': 2})
    monkeypatch.setattr(demo_data, 'SEG_IMAGES', {'train': 6, 'val': 3})

    def build(name, seed, expected):
        result = prepare_demo_data(str(tmp_path / name), seed=seed)
        assert (result['vtab_status'], result['seg_status']) == expected
        return {osp.relpath(osp.join(d, f), tmp_path / name): file_digest([osp.join(d, f)])
                for d, _, files in os.walk(tmp_path / name) for f in files}

    first = build('a', 0, ('built', 'built'))
    # vtab: images, 5 lists, manifest; seg: images and masks, 2 splits, classes, manifest
    assert len(first) == 10 * (2 + 1 + 3) + 5 + 1 + 2 * (6 + 3) + 2 + 1 + 1
    assert build('a', 0, ('kept', 'kept')) == first
    os.remove(tmp_path / 'a' / 'animal_mnist_seg' / 'img_dir' / 'val' / '000001.png')
    assert build('a', 0, ('kept', 'built')) == first  # incomplete: rebuilt
    assert build('b', 0, ('built', 'built')) == first
    other = build('a', 1, ('built', 'built'))
    assert other.keys() == first.keys()
    changed = {f for f in first if first[f] != other[f]}
    assert changed >= {f for f in first if f.endswith('.png') or f.endswith('/test.txt')}
