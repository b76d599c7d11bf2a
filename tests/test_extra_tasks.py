"""The small tasks besides Animal-MNIST (``tools/prepare_demo_data.py --tasks digits,...``).

Both are built in full from scikit-learn's real digits (about 1.5 s together), once per module.
"""
import json
import os
import os.path as osp

import numpy as np
import pytest
from mmpretrain.datasets.transforms import PackInputs
from PIL import Image

from mmdavpt.datasets import LoadImageFromFileStrict, VTAB1kDataset
from mmdavpt_lab.demo_data import (
    PAIR_CLASSES,
    class_parts,
    digit_pairs_task,
    digits_task,
    load_sklearn_digits,
    prepare_extra_tasks,
)

from conftest import load_tool

SPLITS = ('train800', 'val200', 'test')


@pytest.fixture(scope='module')
def digits():
    return load_sklearn_digits()


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('extra'))
    result = prepare_extra_tasks(out, seed=0)
    assert {t: status for t, (_, status) in result.items()} == \
        {'digits': 'built', 'digit-pairs': 'built'}
    return out, {t: path for t, (path, _) in result.items()}


def read_list(path):
    with open(path) as f:
        return [(p, int(label)) for p, label in (line.split() for line in f.read().splitlines())]


def tree(root):
    """``{relative path: bytes}`` of every file under ``root``."""
    files = {}
    for d, _, names in os.walk(root):
        for name in names:
            with open(osp.join(d, name), 'rb') as f:
                files[osp.relpath(osp.join(d, name), root)] = f.read()
    return files


def test_sklearn_digits_are_the_real_ones(digits):
    from sklearn.datasets import load_digits
    images, labels = digits
    reference = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert (labels == reference.target).all()
    assert (images == np.round(reference.images * 255 / 16)).all()


def test_class_parts_are_disjoint_and_balanced():
    labels = np.repeat(np.arange(3), [5, 6, 7])
    parts = class_parts(labels, {'a': 2, 'b': 1}, 'rest', np.random.default_rng(0))
    assert [np.bincount(labels[parts[k]], minlength=3).tolist() for k in ('a', 'b', 'rest')] == \
        [[2, 2, 2], [1, 1, 1], [2, 3, 4]]
    every = np.concatenate(list(parts.values()))
    assert sorted(every.tolist()) == list(range(18))
    with pytest.raises(ValueError, match='class 0 has 5 images, need more than 5'):
        class_parts(labels, {'a': 5}, 'rest', np.random.default_rng(0))


def test_digits_task(digits):
    images, labels = digits
    splits = digits_task(images, labels, seed=0)
    counts = {s: np.bincount(splits[s][1], minlength=10) for s in SPLITS}
    assert (counts['train800'] == 80).all() and (counts['val200'] == 20).all()
    assert counts['test'].sum() == 797 and counts['test'].min() == 174 - 100
    # every one of the 1,797 images is used once: the splits are a partition
    used = np.concatenate([splits[s][0] for s in SPLITS]).reshape(1797, 64)
    assert sorted(map(bytes, used)) == sorted(map(bytes, images.reshape(1797, 64)))
    again = digits_task(images, labels, seed=0)
    assert all((again[s][0] == splits[s][0]).all() for s in SPLITS)
    assert not (digits_task(images, labels, seed=1)['test'][1] == splits['test'][1]).all()


def test_digit_pairs_task(digits):
    images, labels = digits
    splits = digit_pairs_task(images, labels, seed=0)
    assert {s: len(splits[s][1]) for s in SPLITS} == \
        {'train800': 45 * 18, 'val200': 45 * 5, 'test': 45 * 30}
    assert (np.bincount(splits['test'][1], minlength=45) == 30).all()
    digit_of = {bytes(image): label for image, label in zip(images, labels)}
    assert len(digit_of) == 1797  # no two images alike: an image tells its source
    halves = {}
    for split in SPLITS:
        pairs, pair_labels = splits[split]
        assert pairs.shape[1:] == (16, 16) and not pairs[:, :4].any() and not pairs[:, 12:].any()
        left, right = pairs[:, 4:12, :8], pairs[:, 4:12, 8:]
        # both halves are real digits of the class's two digits, the smaller one on the left
        for k, a, b in zip(pair_labels, left, right):
            assert (digit_of[bytes(a)], digit_of[bytes(b)]) == PAIR_CLASSES[k]
        assert len({(bytes(a), bytes(b)) for a, b in zip(left, right)}) == len(pairs)
        halves[split] = {bytes(x) for x in (*left, *right)}
    # no handwritten digit of a val or test pair is seen in training
    assert not halves['train800'] & halves['test'] and not halves['train800'] & halves['val200']
    assert not halves['val200'] & halves['test']


def test_built_tasks_read_as_vtab(built):
    out, paths = built
    for task, folder, num_classes, size in (('digits', 'digits', 10, 8),
                                             ('digit-pairs', 'digit_pairs', 45, 16)):
        assert paths[task] == osp.join(out, 'extra_vtab', folder)
        lists = {s: read_list(osp.join(paths[task], f'{s}.txt'))
                 for s in (*SPLITS, 'train800val200')}
        assert lists['train800val200'] == lists['train800'] + lists['val200']
        assert len({p for s in SPLITS for p, _ in lists[s]}) == sum(len(lists[s]) for s in SPLITS)
        with open(osp.join(paths[task], 'manifest.json')) as f:
            manifest = json.load(f)
        assert (manifest['task'], manifest['seed'], manifest['source']['package']) == \
            (task, 0, 'scikit-learn')
        ds = VTAB1kDataset(osp.dirname(paths[task]), folder, 'val200', serialize_data=False,
                           pipeline=[LoadImageFromFileStrict(), PackInputs()])
        assert len(ds.metainfo['classes']) == num_classes and len(ds) == len(lists['val200'])
        sample = ds[0]
        assert tuple(sample['inputs'].shape) == (3, size, size)
        assert sample['data_samples'].gt_label.item() == lists['val200'][0][1]
    with open(osp.join(paths['digit-pairs'], 'classes.txt')) as f:
        assert f.read().split()[:3] == ['01', '02', '03']
    img = Image.open(osp.join(paths['digits'], lists['test'][0][0]))
    assert img.mode == 'RGB'


def test_rebuild_keeps_refuses_and_forces(built, tmp_path):
    out, paths = built
    before = tree(paths['digits'])
    assert prepare_extra_tasks(out, ['digits'], seed=0) == {'digits': (paths['digits'], 'kept')}
    with pytest.raises(FileExistsError, match=r'extra_vtab/digits holds another build \(seed: '
                       r'\[0\] there, \[1\] asked\).*--force'):
        prepare_extra_tasks(out, ['digits'], seed=1)
    assert tree(paths['digits']) == before  # untouched
    other = str(tmp_path / 'other')
    assert prepare_extra_tasks(other, ['digits'], seed=0)['digits'][1] == 'built'
    assert tree(osp.join(other, 'extra_vtab', 'digits')) == before  # deterministic
    os.remove(osp.join(other, 'extra_vtab', 'digits', 'images', 'test', '000003.png'))
    assert prepare_extra_tasks(other, ['digits'], seed=0)['digits'][1] == 'built'  # incomplete
    assert prepare_extra_tasks(other, ['digits'], seed=1, force=True)['digits'][1] == 'built'
    assert tree(osp.join(other, 'extra_vtab', 'digits')) != before
    mine = tmp_path / 'mine' / 'extra_vtab' / 'digit_pairs'
    mine.mkdir(parents=True)
    (mine / 'notes.txt').write_text('a user file')
    with pytest.raises(FileExistsError, match='no manifest.json'):
        prepare_extra_tasks(str(tmp_path / 'mine'), ['digit-pairs'])
    assert (mine / 'notes.txt').read_text() == 'a user file'
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['letters'\]"):
        prepare_extra_tasks(out, ['letters'])


def test_cli_tasks(tmp_path, capsys):
    tool = load_tool('tools/prepare_demo_data.py')
    with pytest.raises(SystemExit, match="--tasks 'digits,letters': choose from animal-mnist, "
                       'digits, digit-pairs'):
        tool.main(['--out', str(tmp_path), '--tasks', 'digits,letters'])
    assert not os.listdir(tmp_path)
    tool.main(['--out', str(tmp_path), '--tasks', 'digits'])
    assert f'digits: {tmp_path}/extra_vtab/digits (built)' in capsys.readouterr().out
    assert os.listdir(tmp_path) == ['extra_vtab']  # only what was asked
