"""Bad input stops with a message that names what is wrong (one test per case).

Where the check has unit tests next to it (tests/test_backbone*.py, test_datasets.py,
test_mapping.py, ...), the case is exercised here the way a user meets it: through a config,
a Runner, ``init_cfg``, ``--resume`` or a test run.
"""
import os
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner, save_checkpoint
from mmengine.structures import PixelData
from mmpretrain.models import VisionTransformer
from mmpretrain.structures import DataSample
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.structures import SegDataSample
from PIL import Image

from mmdavpt.datasets import CheckSegMask, ImageDecodeError
from mmdavpt.engine.hooks import SemanticMappingHook
from mmdavpt.engine.hooks.config_guard_hook import ConfigGuardHook  # noqa: F401  (registers)
from mmdavpt.registry import build_model

from conftest import (
    NUM_CLASSES,
    TINY_ARCH,
    tiny_classifier_cfg,
    tiny_seg_model,
    write_shapes_task,
)
from conftest import shapes_task_cfg as _cfg


@pytest.fixture
def task(tmp_path):
    root = str(tmp_path / 'data')
    return root, write_shapes_task(root)


def _train(cfg, **changes):
    cfg.merge_from_dict(changes)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def _random_vit(**arch):
    vit = VisionTransformer(arch={**TINY_ARCH, **arch.pop('arch', {})}, img_size=32,
                            patch_size=8, **arch)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in vit.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return vit


# --------------------------------------------------------------------------- model arguments


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_prompts=-1), r'prompt counts must be >= 0, got num_prompts=-1'),
    (dict(num_guided_prompts=-2), r'prompt counts must be >= 0, .*num_guided_prompts=-2'),
    # zero guided prompts where the guidance needs them
    (dict(num_guided_prompts=0), r'DA-VPT guidance needs guided prompts: set '
     r'num_guided_prompts > 0'),
])
def test_negative_or_zero_prompt_counts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(tiny_classifier_cfg(**kwargs))


def test_mapping_hook_without_guidance():
    runner = SimpleNamespace(model=build_model(tiny_classifier_cfg(guidance=False)))
    with pytest.raises(RuntimeError, match='DAVPTImageClassifier has no DA-VPT guidance: use '
                       r'DAVPTImageClassifier / DAVPTEncoderDecoder with guidance=dict\(...\)'):
        SemanticMappingHook(by_epoch=True).before_train(runner)


@pytest.mark.parametrize('layers, bad', [((3, ), 3), ((0, -4), -4)])
def test_guided_layer_out_of_range(layers, bad):
    with pytest.raises(ValueError, match=rf'guided_layers index {bad} is out of range for a ViT '
                       'with 3 layers'):
        build_model(tiny_classifier_cfg(guided_layers=layers))


def test_unknown_bias_tuning_names():
    with pytest.raises(ValueError, match=r"unknown bias_tuning names \['gate', 'qkv'\]; choose "
                       r"from \('q', 'k', 'v', 'proj', 'fc1', 'fc2', 'norm'\)"):
        build_model(tiny_classifier_cfg(bias_tuning=('k', 'qkv', 'gate')))


def test_more_guided_prompts_than_classes_each_class_gets_its_own_prompt():
    """Allowed (documented in SemanticMapping): with C <= M, class c uses prompt c; the M - C
    extra prompts are positives of no class, so the metric losses only push them away from every
    sample (their negative term) and the pull term averages over the C prompts with positives."""
    model = build_model(tiny_classifier_cfg(num_classes=2, num_guided_prompts=3))
    mapping = model.guidance.mapping
    mapping.accumulate(torch.randn(4, 32), torch.tensor([0, 1, 0, 1]))
    mapping.remap()
    assert mapping.class_to_prompt.tolist() == [0, 1]
    model.train()
    samples = [DataSample().set_gt_label(c) for c in (0, 1, 1, 0)]
    losses = model.loss(torch.randn(4, 3, 32, 32), samples)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    guided = model.backbone.prompts[-1]
    assert guided.shape[0] == 3 and guided.grad[2].abs().sum() > 0  # the extra prompt learns


# --------------------------------------------------------------------------- checkpoints


def _pretrained_cfg(path):
    cfg = tiny_classifier_cfg(num_classes=NUM_CLASSES)
    cfg['backbone']['init_cfg'] = dict(type='Pretrained', checkpoint=path)
    return cfg


@pytest.mark.parametrize('change, error, match', [
    (dict(arch=dict(num_layers=4)), KeyError, r"unexpected keys \['layers\.3\.attn\.proj\.bias'"),
    ('drop qkv', KeyError, r"missing backbone keys \['layers\.1\.attn\.qkv\.weight'\]"),
])
def test_pretrained_checkpoint_keys_do_not_match(tmp_path, change, error, match):
    state = _random_vit(**(change if isinstance(change, dict) else {})).state_dict()
    if change == 'drop qkv':
        del state['layers.1.attn.qkv.weight']
    path = str(tmp_path / 'vit.pth')
    save_checkpoint({'state_dict': state}, path)
    model = build_model(_pretrained_cfg(path))
    with pytest.raises(error, match=match):
        model.init_weights()


@pytest.mark.parametrize('arch, match', [
    (dict(arch=dict(embed_dims=64)), r'cls_token has shape \(1, 1, 64\) but the model \(32 wide'),
    (dict(patch_size=16), r'patch size \(16, 16\) does not match the model\'s \(8, 8\)'),
])
def test_pretrained_checkpoint_of_wrong_width_or_patch_size(tmp_path, arch, match):
    if 'patch_size' in arch:
        vit = VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=16)
    else:
        vit = _random_vit(**arch)
    path = str(tmp_path / 'vit.pth')
    save_checkpoint({'state_dict': vit.state_dict()}, path)
    with pytest.raises(ValueError, match=match):
        build_model(_pretrained_cfg(path)).init_weights()


def test_testing_a_checkpoint_of_another_architecture(task, tmp_path):
    root, _ = task
    _train(_cfg(root, tmp_path / 'run'))
    ckpt = str(tmp_path / 'run' / 'epoch_1.pth')
    # the same config tests fine ...
    ok = _cfg(root, tmp_path / 'test_ok', name='ok')
    ok.load_from = ckpt
    assert 'accuracy/top1' in Runner.from_cfg(ok).test()
    # ... another prompt count would have been tested with half-loaded prompts (MMEngine warns)
    other = _cfg(root, tmp_path / 'test_other', name='other', num_prompts=4)
    other.load_from = ckpt
    with pytest.raises(KeyError, match=r'epoch_1\.pth does not match the model '
                       r'DAVPTImageClassifier of this config: 2 shape mismatches \(checkpoint '
                       r"vs model\): \['backbone\.prompts\.0 \(3, 32\) vs \(4, 32\)', "
                       r"'backbone\.prompts\.1 \(3, 32\) vs \(4, 32\)'\]"):
        Runner.from_cfg(other).test()


def test_tuned_only_checkpoint_passes_the_guard(task, tmp_path):
    root, _ = task
    path = str(tmp_path / 'vit.pth')
    save_checkpoint({'state_dict': _random_vit().state_dict()}, path)
    cfg = _cfg(root, tmp_path / 'run', hooks=[dict(type='TunedOnlyCheckpointHook')])
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=path)
    _train(cfg)
    test = _cfg(root, tmp_path / 'test', name='test')
    test.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=path)
    test.load_from = str(tmp_path / 'run' / 'epoch_1.pth')
    assert 'accuracy/top1' in Runner.from_cfg(test).test()
    # the same checkpoint on another backbone of the same shape (tools/test.py's path)
    other = str(tmp_path / 'other_vit.pth')
    state = _random_vit().state_dict()
    state['layers.0.attn.qkv.weight'] = -state['layers.0.attn.qkv.weight']
    save_checkpoint({'state_dict': state}, other)
    test = _cfg(root, tmp_path / 'test_other', name='test_other')
    test.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=other)
    test.load_from = str(tmp_path / 'run' / 'epoch_1.pth')
    with pytest.raises(ValueError, match=rf'trained on a frozen backbone with fingerprint '
                       rf'[0-9a-f]{{12}}, but the backbone loaded from {other}'):
        Runner.from_cfg(test).test()


# --------------------------------------------------------------------------- data


def test_missing_split_file(task, tmp_path):
    root, task_dir = task
    os.remove(osp.join(task_dir, 'train800.txt'))
    with pytest.raises(FileNotFoundError, match=r'split file not found: .*shapes/train800\.txt'):
        _train(_cfg(root, tmp_path / 'run'))


def test_empty_split_file(task, tmp_path):
    root, task_dir = task
    open(osp.join(task_dir, 'train800.txt'), 'w').close()
    with pytest.raises(ValueError, match=r'shapes/train800\.txt: split file is empty'):
        _train(_cfg(root, tmp_path / 'run'))


def test_undecodable_image_stops_training(task, tmp_path):
    """MMEngine's dataset redraws another sample when a transform returns None; the strict
    loader raises instead, with the file name."""
    root, task_dir = task
    with open(osp.join(task_dir, 'images', 'train800', '2_1.png'), 'wb') as f:
        f.write(b'not a png at all')
    with pytest.raises(ImageDecodeError, match=r'cannot decode image file '
                       r'.*images/train800/2_1\.png \(16 bytes\)'):
        _train(_cfg(root, tmp_path / 'run'))


def test_label_outside_the_class_range(task, tmp_path):
    root, task_dir = task
    with open(osp.join(task_dir, 'train800.txt'), 'a') as f:
        f.write('images/train800/0_0.png 7\n')  # line 9
    with pytest.raises(ValueError, match=r'train800\.txt:9: class id 7 is outside \[0, 4\)'):
        _train(_cfg(root, tmp_path / 'run'))


def test_class_absent_from_the_training_split(task, tmp_path):
    root, task_dir = task
    split = osp.join(task_dir, 'train800.txt')
    with open(split) as f:
        lines = [line for line in f if not line.rstrip().endswith(' 3')]
    with open(split, 'w') as f:
        f.writelines(lines)
    with pytest.raises(ValueError, match=r'train800\.txt: 1 of 4 classes have no training '
                       r'sample: 3 \(class3\)\. Pass allow_missing_classes=True'):
        _train(_cfg(root, tmp_path / 'run'))


def test_segmentation_mask_value_outside_the_classes(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[0, :3] = 255  # the ignore index is fine
    mask[5, 5] = 11
    path = str(tmp_path / 'ann' / 'm.png')
    os.makedirs(osp.dirname(path))
    Image.fromarray(mask).save(path)
    results = LoadAnnotations()(dict(seg_map_path=path, reduce_zero_label=False,
                                      seg_fields=[], ori_shape=(8, 8)))
    with pytest.raises(ValueError, match=r'mask .*ann/m\.png has label values outside \[0, 11\) '
                       r'that are not ignore_index=255: 11 \(1 px\)'):
        CheckSegMask(num_classes=11)(results)


def test_segmentation_mask_value_reaching_the_model():
    model = tiny_seg_model()
    model.train()
    samples = []
    for value in (0, 7):
        mask = torch.randint(0, 4, (1, 32, 32))
        mask[0, 0, 0] = value
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=mask)
        sample.set_metainfo(dict(img_shape=(32, 32), pad_shape=(32, 32)))
        samples.append(sample)
    with pytest.raises(ValueError, match=r'segmentation mask has values \[7\] outside \[0, 4\) '
                       'that are not the ignore index 255'):
        model.loss(torch.randn(2, 3, 32, 32), samples)


# --------------------------------------------------------------------------- training


class _PoisonAt(Hook):
    """Makes the head produce NaN logits from iteration ``at`` (0-based) on."""

    def __init__(self, at):
        self.at, self.prompts = at, None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at:
            self.prompts = [p.detach().clone() for p in runner.model.backbone.prompts]
            with torch.no_grad():
                runner.model.head.fc.bias[0] = float('nan')


def test_nan_loss_stops_before_the_update_naming_the_step(task, tmp_path):
    root, _ = task
    poison = _PoisonAt(1)  # the second of the two iterations of epoch 1
    runner = Runner.from_cfg(_cfg(root, tmp_path / 'run'))
    runner.register_hook(poison)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at iteration 2: \{'loss_cls': "
                       r'nan.*training stopped before the optimiser step'):
        runner.train()
    for before, after in zip(poison.prompts, runner.model.backbone.prompts):
        assert torch.equal(before, after)  # no update with garbage
    assert not osp.exists(tmp_path / 'run' / 'epoch_1.pth')


def test_resume_from_a_run_of_a_different_config(task, tmp_path):
    root, _ = task
    work_dir = tmp_path / 'run'
    _train(_cfg(root, work_dir, name='first'))
    ckpt = str(work_dir / 'epoch_1.pth')

    # another model: refused, naming the keys, before any weight or optimiser state is loaded
    other = _cfg(root, work_dir, name='other', max_epochs=2, num_prompts=4, prompt_dropout=0.1)
    with pytest.raises(ValueError, match=r'--resume: .*epoch_1\.pth was saved by a run of a '
                       r'different config; 2 key\(s\) of .* differ \(checkpoint -> now\): '
                       r'model\.backbone\.num_prompts: 3 -> 4; model\.backbone\.prompt_dropout: '
                       r'<absent> -> 0\.1\. Resume with the config of that run, .*'
                       r'--allow-config-change'):
        _train(other, resume=True, load_from=ckpt)

    # other training data (batch size): refused too, unless explicitly allowed
    smaller = dict(resume=True, load_from=ckpt)
    with pytest.raises(ValueError, match=r'train_dataloader\.batch_size: 4 -> 2'):
        _train(_cfg(root, work_dir, name='smaller', max_epochs=2, batch_size=2), **smaller)
    allowed = _cfg(root, work_dir, name='allowed', max_epochs=2, batch_size=2,
                   hooks=[dict(type='ConfigGuardHook', allow_config_change=True)])
    allowed.custom_hooks.pop(1)  # the default guard
    assert _train(allowed, **smaller).epoch == 2

    # extending the schedule is what resuming is for
    assert _train(_cfg(root, work_dir, name='longer', max_epochs=2), **smaller).epoch == 2
