"""``tools/train.py --no-validate`` and ``--auto-scale-lr`` (MMPretrain's options)."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmdavpt.utils import cli
from mmdavpt.utils.cli import build_runner

from conftest import REPO, load_tool, write_tiny_config

CLS_DEMO = osp.join(REPO, 'configs', 'demo', 'vit-s14-imgfocus_davpt_animal-mnist-56px.py')
SEG_DEMO = osp.join(REPO, 'configs', 'segmentation', 'demo',
                    'setr_pup_davpt_vit-s14_1xb8-600it_animal-mnist-seg-112x112.py')


@pytest.fixture(scope='module')
def train_tool():
    return load_tool('tools/train.py')


def _merged(train_tool, argv):
    args = train_tool.parse_args(argv)
    return train_tool.merge_args(Config.fromfile(args.config), args)


def test_no_validate_and_auto_scale_lr_train(train_tool, tmp_path):
    """A tiny run (batch 5, lr 1e-2, no scheduler) that says its lr was set for batch 10: the
    optimizer runs at 5e-3, and no validation runs."""
    config = write_tiny_config(tmp_path, max_epochs=1)
    work_dir = tmp_path / 'work'
    cfg = _merged(train_tool, [config, '--work-dir', str(work_dir), '--no-validate',
                               '--auto-scale-lr', '--cfg-options',
                               'auto_scale_lr.base_batch_size=10'])
    assert cfg.val_cfg is None and cfg.val_dataloader is None and cfg.val_evaluator is None
    assert cfg.auto_scale_lr == dict(base_batch_size=10, enable=True)
    runner = build_runner(cfg)
    runner.train()
    assert runner.optim_wrapper.get_lr()['lr'] == [pytest.approx(5e-3)]
    assert runner.val_loop is None
    assert osp.isfile(work_dir / 'epoch_1.pth')


def test_no_validate_says_when_no_checkpoint_would_be_saved(train_tool, tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(cli, 'print_log', lambda msg, **kwargs: logged.append(msg))
    # the demo keeps only the best-val checkpoint
    _merged(train_tool, [CLS_DEMO, '--work-dir', str(tmp_path), '--no-validate'])
    assert any('so no checkpoint will be saved' in msg for msg in logged)
    logged.clear()
    _merged(train_tool, [CLS_DEMO, '--work-dir', str(tmp_path), '--no-validate',
                         '--cfg-options', 'default_hooks.checkpoint.interval=1'])
    assert not any('so no checkpoint will be saved' in msg for msg in logged)


def test_auto_scale_lr_needs_the_base_batch_size(train_tool, tmp_path):
    cfg = _merged(train_tool, [CLS_DEMO, '--work-dir', str(tmp_path), '--auto-scale-lr'])
    assert cfg.auto_scale_lr == dict(base_batch_size=32, enable=True)  # the paper's batch
    with pytest.raises(KeyError, match='no auto_scale_lr.base_batch_size'):
        _merged(train_tool, [SEG_DEMO, '--work-dir', str(tmp_path), '--auto-scale-lr'])
    cfg = _merged(train_tool, [SEG_DEMO, '--work-dir', str(tmp_path), '--auto-scale-lr',
                               '--cfg-options', 'auto_scale_lr.base_batch_size=8'])
    assert cfg.auto_scale_lr.enable is True
