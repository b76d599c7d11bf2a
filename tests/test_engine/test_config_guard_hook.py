"""ConfigGuardHook on a tested checkpoint: it must have been trained on the test data's classes.

The case of a user: ``tools/test.py`` with the digits config and a checkpoint trained on
Animal-MNIST (10 classes both, the same shapes) scored 13.67 % without a word. Here the tiny
shapes task trains, then is tested under other class names.
"""
import glob
import os.path as osp

import pytest
from mmengine.runner import Runner

from mmdavpt.engine.hooks.config_guard_hook import ConfigGuardHook  # noqa: F401  (registers)
from mmdavpt.utils.cli import merge_test_args, run_test

from conftest import shapes_task_cfg, write_shapes_task

OTHER = ['zero', 'one', 'two', 'three']


@pytest.fixture
def trained(tmp_path):
    """(data root, checkpoint) of one epoch on the shapes task (classes class0..class3)."""
    root = str(tmp_path / 'data')
    write_shapes_task(root)
    Runner.from_cfg(shapes_task_cfg(root, tmp_path / 'run')).train()
    return root, str(tmp_path / 'run' / 'epoch_1.pth')


def _test_cfg(root, work_dir, classes=None):
    cfg = shapes_task_cfg(root, work_dir, name=osp.basename(str(work_dir)))
    if classes is not None:
        cfg.test_dataloader.dataset.classes = classes
    return cfg


def _log(work_dir) -> str:
    (path, ) = glob.glob(osp.join(str(work_dir), '*', '*.log'))
    with open(path) as f:
        return f.read()


def test_a_checkpoint_of_other_classes_is_refused_when_tested(trained, tmp_path):
    root, ckpt = trained
    same = _test_cfg(root, tmp_path / 'same')
    same.load_from = ckpt
    assert 'accuracy/top1' in Runner.from_cfg(same).test()

    other = _test_cfg(root, tmp_path / 'other', OTHER)
    other.load_from = ckpt
    with pytest.raises(ValueError, match=r"epoch_1\.pth was trained on 4 classes \('class0', "
                       r"'class1', 'class2', 'class3'\) \(its meta\['dataset_meta'\]\), but the "
                       r"test data of this config has 4 classes \('zero', 'one', 'two', "
                       r"'three'\).*with the config of the data it was trained on, or pass "
                       r'--allow-config-change'):
        Runner.from_cfg(other).test()

    # the same classes in another order are other labels too
    swapped = _test_cfg(root, tmp_path / 'swapped', ['class1', 'class0', 'class2', 'class3'])
    swapped.load_from = ckpt
    with pytest.raises(ValueError, match='was trained on 4 classes'):
        Runner.from_cfg(swapped).test()


def test_tools_test_allow_config_change_tests_with_a_warning(trained, tmp_path):
    """``tools/test.py --allow-config-change``: the same classes under other names."""
    root, ckpt = trained
    work_dir = str(tmp_path / 'allowed')
    cfg = merge_test_args(_test_cfg(root, work_dir, OTHER), ckpt, work_dir=work_dir,
                          allow_config_change=True)
    assert 'accuracy/top1' in run_test(cfg)
    assert 'test data of this config has 4 classes' in _log(work_dir)
    assert 'Evaluating anyway (allow_config_change=True)' in _log(work_dir)
    refused = str(tmp_path / 'refused')
    cfg = merge_test_args(_test_cfg(root, refused, OTHER), ckpt, work_dir=refused)
    with pytest.raises(ValueError, match='was trained on 4 classes'):
        run_test(cfg)


def test_train_refuses_a_work_dir_of_the_same_config_with_other_settings(tmp_path):
    """``tools/train.py`` into a work dir that holds a run of the same config file with other
    ``--cfg-options``: refused before anything is written (MMEngine keeps one set of
    checkpoint names per work dir: the best checkpoint and the dumped config would be
    replaced). The same settings retrain there; ``--resume`` continues."""
    import os

    from mmdavpt.utils.workdir import WorkDirConflict

    from conftest import load_tool, write_tiny_config
    train = load_tool('tools/train.py')
    config = write_tiny_config(tmp_path, max_epochs=1)
    work_dir = str(tmp_path / 'work')
    train.main([config, '--work-dir', work_dir, '--cfg-options',
                'optim_wrapper.optimizer.lr=0.01'])
    before = {f: os.path.getmtime(osp.join(work_dir, f)) for f in os.listdir(work_dir)}
    assert any(f.startswith('best_') for f in before)
    with pytest.raises(WorkDirConflict, match=r'holds checkpoints of a run with other settings '
                       r'\(e\.g\. best_accuracy_top1_epoch_1\.pth; 1 config key\(s\) differ, '
                       r'checkpoint -> now: optim_wrapper\.optimizer\.lr: 0\.01 -> 0\.02\); '
                       r'training there from scratch would overwrite them\. Pass another '
                       r'--work-dir, or --resume to continue that run\.'):
        train.main([config, '--work-dir', work_dir, '--cfg-options',
                    'optim_wrapper.optimizer.lr=0.02'])
    assert {f: os.path.getmtime(osp.join(work_dir, f)) for f in os.listdir(work_dir)} == before
    # the same settings (a work dir spelled otherwise) are the same run: trained again
    train.main([config, '--work-dir', work_dir + '/', '--cfg-options',
                'optim_wrapper.optimizer.lr=0.01'])
    train.main([config, '--work-dir', work_dir, '--resume', '--cfg-options',
                'optim_wrapper.optimizer.lr=0.01', 'train_cfg.max_epochs=2'])
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
