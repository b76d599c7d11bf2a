"""Checkpoints with only the tuned tensors, loaded on top of the configured pre-trained ViT."""
import os

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner import load_checkpoint, save_checkpoint
from mmpretrain.models import VisionTransformer
from mmpretrain.structures import DataSample

from mmdavpt.registry import build_model

from conftest import TINY_ARCH, tiny_classifier_cfg, tiny_mapping_runner


@pytest.fixture
def pretrained(tmp_path):
    vit = VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=8)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in vit.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    path = str(tmp_path / 'pretrained.pth')
    save_checkpoint({'state_dict': vit.state_dict()}, path)
    return path, vit.state_dict()


def _model_cfg(pretrained_path):
    cfg = tiny_classifier_cfg(num_classes=5)
    cfg['backbone']['init_cfg'] = dict(type='Pretrained', checkpoint=pretrained_path)
    return cfg


def test_round_trip_through_runner_and_plain_load(tmp_path, pretrained):
    path, vit_state = pretrained
    runner = _runner_with(tmp_path / 'run', path)
    runner.train()
    ckpt_path = tmp_path / 'run' / 'epoch_1.pth'
    ckpt = torch.load(ckpt_path, weights_only=True)
    keys = set(ckpt['state_dict'])
    assert 'backbone.layers.0.attn.qkv.weight' not in keys and 'backbone.pos_embed' not in keys
    assert {'backbone.prompts.0', 'head.fc.weight', 'guidance.mapping.class_to_prompt'} <= keys
    assert ckpt['meta']['davpt_tuned_only'] is True
    full_size = sum(v.numel() for v in runner.model.state_dict().values())
    assert sum(v.numel() for v in ckpt['state_dict'].values()) < full_size / 3

    # a fresh model, never initialised (as tools/test.py builds it), gets the pre-trained
    # backbone from init_cfg and the tuned tensors from the checkpoint
    fresh = build_model(_model_cfg(path))
    load_checkpoint(fresh, str(ckpt_path), map_location='cpu')
    trained = runner.model
    for k, v in vit_state.items():
        torch.testing.assert_close(fresh.backbone.state_dict()[k], v)
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)
    fresh.eval()
    trained.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(fresh.extract_feat(x)[0], trained.extract_feat(x)[0])


def _runner_with(work_dir, pretrained_path):
    runner = tiny_mapping_runner(work_dir, dict(by_epoch=True, max_epochs=1),
                     hook=dict(type='SemanticMappingHook'))
    runner.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=pretrained_path)
    runner.register_hook(dict(type='TunedOnlyCheckpointHook'))
    return runner


def test_tuned_only_checkpoint_without_pretrained_backbone_fails(tmp_path, pretrained):
    path, _ = pretrained
    model = build_model(_model_cfg(path))
    model.init_weights()
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith('backbone.') or 'prompts' in k}
    save_checkpoint({'state_dict': state}, str(tmp_path / 'tuned.pth'))
    no_init = build_model(tiny_classifier_cfg(num_classes=5))
    with pytest.raises(KeyError, match='only the tuned tensors'):
        load_checkpoint(no_init, str(tmp_path / 'tuned.pth'), map_location='cpu')
    assert os.path.exists(path)


def test_non_finite_loss_stops_with_the_iteration():
    model = build_model(tiny_classifier_cfg(num_classes=5, fixed_mapping=True))
    model.train()
    MessageHub.get_current_instance().update_info('iter', 41)
    x = torch.randn(2, 3, 32, 32)
    x[0, 0, 0, 0] = float('nan')
    samples = [DataSample().set_gt_label(0), DataSample().set_gt_label(1)]
    with pytest.raises(FloatingPointError, match='non-finite loss at iteration 42'):
        model.loss(x, samples)
