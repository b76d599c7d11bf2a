"""The same seed gives the same run twice: the demo's config and pipeline, a tiny model and data.

The demo config (``configs/demo/vit-s14-imgfocus_davpt_animal-mnist-56px.py``) is used as it is
(pipeline, DA-VPT guidance, mapping hook, schedule, best-val checkpointing), with three changes
that keep it within seconds on a CPU: a 3-layer 32-wide ViT with no pre-trained checkpoint,
a reduced Animal-MNIST build (4 training and 2 validation images per class) and 2 epochs.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmdavpt_lab import demo_data
from mmdavpt_lab.demo_data import prepare_demo_data

from conftest import TINY_ARCH

DEMO_CFG = osp.join(osp.dirname(__file__), '..', 'configs', 'demo',
                    'vit-s14-imgfocus_davpt_animal-mnist-56px.py')


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('demo'))
    patch = pytest.MonkeyPatch()
    patch.setattr(demo_data, 'PER_CLASS', {'train800': 4, 'val200': 2, 'test': 2,
                                           'seg_train': 1, 'seg_val': 1})
    patch.setattr(demo_data, 'SEG_IMAGES', {'train': 1, 'val': 1})
    try:
        prepare_demo_data(out, seed=0)
    finally:
        patch.undo()
    return osp.join(out, 'animal_mnist_vtab')


def _train(demo_root, work_dir, seed):
    cfg = Config.fromfile(DEMO_CFG)
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = demo_root
    cfg.train_dataloader.batch_size = 8
    cfg.model.backbone.update(arch=TINY_ARCH, patch_size=14, layer_scale_init_value=0.,
                              init_cfg=None, allow_random_backbone=True, prompt_dropout=0.1)
    cfg.model.head.in_channels = TINY_ARCH['embed_dims']
    cfg.train_cfg.max_epochs = 2
    cfg.param_scheduler[1].update(T_max=1, end=2)
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.work_dir = str(work_dir)
    runner = Runner.from_cfg(cfg)
    runner.train()
    accuracy = runner.message_hub.get_scalar('val/accuracy/top1').current()
    return accuracy, {k: v.clone() for k, v in runner.model.state_dict().items()}


def test_same_seed_same_accuracy_and_weights(demo_root, tmp_path):
    acc_a, state_a = _train(demo_root, tmp_path / 'a', seed=0)
    acc_b, state_b = _train(demo_root, tmp_path / 'b', seed=0)
    assert acc_a == acc_b
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    # and the seed matters (the check above is not vacuous)
    _, state_c = _train(demo_root, tmp_path / 'c', seed=1)
    assert not torch.equal(state_a['backbone.prompts.0'], state_c['backbone.prompts.0'])
