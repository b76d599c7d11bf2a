"""Nothing trains silently wrong on the model side: a random frozen backbone, a missing
mapping hook, a tuned-only checkpoint on another backbone, a head/data class-count mismatch,
Mixup/CutMix labels, and single values where a sequence is expected."""
import logging
import os
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.runner import Runner, load_checkpoint, save_checkpoint
from mmpretrain.models import VisionTransformer
from mmpretrain.structures import DataSample

from mmdavpt.engine.head_classes import check_head_classes
from mmdavpt.models.backbones import davpt_backbones
from mmdavpt.models.backbones.tuned_only import (
    FINGERPRINT_KEY,
    META_BACKBONES,
    fingerprint_digest,
    frozen_fingerprint,
    strip_to_tuned_only,
)
from mmdavpt.registry import build_model

from conftest import TINY_ARCH, TinyClsDataset, tiny_backbone_cfg, tiny_classifier_cfg


class _Records(logging.Handler):
    """The messages logged to the current MMLogger while it is attached."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        MMLogger.get_current_instance().addHandler(self)
        return self

    def __exit__(self, *exc):
        MMLogger.get_current_instance().removeHandler(self)


def _runner(work_dir, model, dataset, hooks=(), max_epochs=1, **kwargs):
    return Runner(**kwargs,
        model=model, work_dir=str(work_dir),
        experiment_name=f'{os.path.basename(work_dir)}-{uuid.uuid4().hex}',
        train_dataloader=dict(dataset=dataset, sampler=dict(type='DefaultSampler', shuffle=True),
                              batch_size=4, num_workers=0,
                              collate_fn=dict(type='pseudo_collate')),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)),
        custom_hooks=list(hooks), default_hooks=dict(checkpoint=None),
        default_scope='mmpretrain', randomness=dict(seed=0))


def _vit_file(path, seed):
    vit = VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=8)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in vit.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    save_checkpoint({'state_dict': vit.state_dict()}, str(path))
    return str(path)


def _pretrained_cfg(path, **kwargs):
    cfg = tiny_classifier_cfg(num_classes=5, **kwargs)
    cfg['backbone'].update(init_cfg=dict(type='Pretrained', checkpoint=path),
                           allow_random_backbone=False)
    return cfg


# --------------------------------------------------------------------- 1. random frozen backbone


def test_training_without_pretrained_weights_is_refused(tmp_path):
    model = tiny_classifier_cfg(allow_random_backbone=False)
    runner = _runner(tmp_path, model, TinyClsDataset(5, per_class=1),
                     hooks=[dict(type='SemanticMappingHook')])
    with pytest.raises(ValueError, match=r"DAVPTViT has no pre-trained weights \(init_cfg=None\)"
                       r".*init_cfg=dict\(type='Pretrained', checkpoint='path/to/vit.pth'\) "
                       r'.*_delete_=True.*allow_random_backbone=True'):
        runner.train()


def test_random_backbone_opt_in_is_logged():
    model = build_model(tiny_backbone_cfg(allow_random_backbone=True))
    with _Records() as records:
        model.init_weights()
    assert any('allow_random_backbone=True: the frozen backbone is randomly initialised' in m
               for m in records.messages)


def test_a_model_built_for_testing_needs_no_pretrained_weights(tmp_path):
    """tools/test.py never calls init_weights: a full checkpoint loads without init_cfg."""
    trained = build_model(tiny_classifier_cfg())
    save_checkpoint({'state_dict': trained.state_dict()}, str(tmp_path / 'full.pth'))
    model = build_model(tiny_classifier_cfg(allow_random_backbone=False))
    load_checkpoint(model, str(tmp_path / 'full.pth'), map_location='cpu', strict=True)
    torch.testing.assert_close(model.backbone.pos_embed, trained.backbone.pos_embed)


# --------------------------------------------------------------------- 2. no mapping hook


def test_guidance_without_a_mapping_refuses_the_first_training_step(tmp_path):
    runner = _runner(tmp_path, tiny_classifier_cfg(), TinyClsDataset(5, per_class=1))
    with pytest.raises(RuntimeError, match=r'placeholder class->prompt mapping \(class c -> '
                       r"prompt c % 2\).*Add dict\(type='SemanticMappingHook'\) to custom_hooks"
                       r'.*model\.guidance\.mapping=dict\(fixed=True\)'):
        runner.train()
    assert runner.iter == 0  # stopped in the first step, nothing was updated


def test_a_fixed_mapping_trains_and_refuses_to_remap():
    model = build_model(tiny_classifier_cfg(num_classes=4, fixed_mapping=True))
    model.train()
    samples = [DataSample().set_gt_label(c) for c in range(4)]
    losses = model.loss(torch.randn(4, 3, 32, 32), samples)
    assert {'loss_ml_xp', 'loss_ml_pcls'} <= set(losses)
    assert model.guidance.mapping.class_to_prompt.tolist() == [0, 1, 0, 1]
    with pytest.raises(RuntimeError, match=r'this mapping is fixed .*remove SemanticMappingHook'):
        model.guidance.mapping.remap()


# --------------------------------------------------------------------- 3. backbone fingerprint


def _tuned_only_file(tmp_path, pretrained):
    model = build_model(_pretrained_cfg(pretrained))
    model.init_weights()
    with torch.no_grad():
        model.backbone.prompts[0].add_(1.)
    checkpoint = dict(state_dict=model.state_dict(), meta={})
    strip_to_tuned_only(checkpoint, davpt_backbones(model))
    path = str(tmp_path / 'tuned.pth')
    torch.save(checkpoint, path)
    return path, model, checkpoint


def test_tuned_only_checkpoint_records_the_backbone_and_loads_on_it(tmp_path):
    pretrained = _vit_file(tmp_path / 'a.pth', seed=1)
    path, trained, checkpoint = _tuned_only_file(tmp_path, pretrained)
    recorded = checkpoint['state_dict'][f'backbone.{FINGERPRINT_KEY}']
    assert checkpoint['meta'][META_BACKBONES] == {'backbone': dict(
        fingerprint=fingerprint_digest(recorded), pretrained=pretrained)}
    fresh = build_model(_pretrained_cfg(pretrained))
    load_checkpoint(fresh, path, map_location='cpu', strict=True)
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)


def test_tuned_only_checkpoint_on_another_backbone_is_refused(tmp_path):
    path, _, checkpoint = _tuned_only_file(tmp_path, _vit_file(tmp_path / 'a.pth', seed=1))
    other = _vit_file(tmp_path / 'b.pth', seed=2)  # same shapes, other weights
    digest = fingerprint_digest(checkpoint['state_dict'][f'backbone.{FINGERPRINT_KEY}'])
    with pytest.raises(ValueError, match=rf'trained on a frozen backbone with fingerprint '
                       rf'{digest}, but the backbone loaded from {other} '
                       r'\(model\.backbone\.init_cfg\.checkpoint\) has fingerprint [0-9a-f]{12}'):
        load_checkpoint(build_model(_pretrained_cfg(other)), path, map_location='cpu')


@pytest.mark.parametrize('resume', [False, True])
def test_load_from_or_resume_onto_another_backbone_is_refused(tmp_path, resume):
    path, _, _ = _tuned_only_file(tmp_path, _vit_file(tmp_path / 'a.pth', seed=1))
    other = _vit_file(tmp_path / 'b.pth', seed=2)
    runner = _runner(tmp_path / 'run', _pretrained_cfg(other), TinyClsDataset(5, per_class=1),
                     hooks=[dict(type='SemanticMappingHook')], load_from=path, resume=resume)
    with pytest.raises(ValueError, match=rf'but the backbone loaded from {other} '):
        runner.train()


def test_tuned_only_checkpoint_without_a_fingerprint_is_refused(tmp_path):
    pretrained = _vit_file(tmp_path / 'a.pth', seed=1)
    path, _, checkpoint = _tuned_only_file(tmp_path, pretrained)
    del checkpoint['state_dict'][f'backbone.{FINGERPRINT_KEY}']
    torch.save(checkpoint, path)
    with pytest.raises(KeyError, match=rf'not backbone\.{FINGERPRINT_KEY}, the fingerprint of the '
                       rf'frozen backbone .* that {pretrained} is that backbone'):
        load_checkpoint(build_model(_pretrained_cfg(pretrained)), path, map_location='cpu')


def test_fingerprint_sees_one_changed_weight_and_not_the_tuned_tensors(tmp_path):
    model = build_model(_pretrained_cfg(_vit_file(tmp_path / 'a.pth', seed=1),
                                        bias_tuning=('k', 'v')))
    model.init_weights()
    before = frozen_fingerprint(model.backbone)
    with torch.no_grad():
        model.backbone.prompts[1].add_(1.)  # tuned: not part of the fingerprint
        model.backbone.layers[0].attn.k_bias_delta.add_(1.)
    assert torch.equal(frozen_fingerprint(model.backbone), before)
    with torch.no_grad():
        model.backbone.layers[1].ffn.layers[1].weight[3, 5] += 1e-3
    assert not torch.allclose(frozen_fingerprint(model.backbone), before, rtol=1e-6)


# --------------------------------------------------------------------- 4. head vs data classes


def _classes(n):
    return SimpleNamespace(metainfo=dict(classes=[f'c{i}' for i in range(n)]))


def test_head_with_fewer_classes_than_the_data_is_an_error():
    model = build_model(tiny_classifier_cfg(num_classes=5))
    with pytest.raises(ValueError, match=r'model\.head\.num_classes=5 but there are 7 classes in '
                       r"train_dataloader\.dataset \(SimpleNamespace\.metainfo\['classes'\]\): "
                       r'labels 5\.\.6 are outside the head\. Set model\.head\.num_classes=7'):
        check_head_classes(model, _classes(7), MMLogger.get_current_instance())


def test_head_with_more_classes_than_the_data_warns_and_keeps_them_out_of_the_mapping(tmp_path):
    class FourClasses(TinyClsDataset):
        METAINFO = dict(classes=('a', 'b', 'c', 'd'))

    model = tiny_classifier_cfg(num_classes=8, num_guided_prompts=3)
    runner = _runner(tmp_path, model, FourClasses(4, per_class=2),
                     hooks=[dict(type='SemanticMappingHook'), dict(type='ConfigGuardHook')])
    with _Records() as records:
        runner.train()
    assert any('model.head.num_classes=8 but there are only 4 classes in train_dataloader'
               '.dataset (FourClasses' in m and 'classes 4..7 never occur' in m
               for m in records.messages)
    assert any('model.data_preprocessor.num_classes=8' in m for m in records.messages)
    # the initial k-means grouped the 4 classes of the data; 4..7 kept the placeholder c % 3
    assert any('DA-VPT remap (initial): k-means' in m and 'over 4 classes' in m
               for m in records.messages)
    assert runner.model.guidance.mapping.class_to_prompt[4:].tolist() == [1, 2, 0, 1]


# --------------------------------------------------------------------- 5. Mixup / CutMix


@pytest.mark.parametrize('augment', [dict(type='Mixup', alpha=1.0),
                                     dict(type='CutMix', alpha=1.0)])
def test_mixed_batches_guide_with_the_dominant_class(augment):
    cfg = tiny_classifier_cfg(num_classes=5, fixed_mapping=True)
    cfg['data_preprocessor']['batch_augments'] = dict(augments=[augment])
    model = build_model(cfg)
    model.train()
    labels = [0, 1, 2, 3, 4, 0, 1, 2]
    for seed in range(20):  # a draw where some image is mostly another one
        np.random.seed(seed)
        torch.manual_seed(seed)
        data = model.data_preprocessor(dict(
            inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8) for _ in labels],
            data_samples=[DataSample().set_gt_label(c) for c in labels]), True)
        scores = torch.stack([ds.gt_score for ds in data['data_samples']])
        if (scores.argmax(1) != torch.tensor(labels)).any():
            break
    dominant = scores.argmax(1)
    assert (scores.amax(1) < 1).any() and not torch.equal(dominant, torch.tensor(labels))
    with _Records() as records:
        model.loss(data['inputs'], data['data_samples'])
        model.loss(data['inputs'], data['data_samples'])
    said = [m for m in records.messages if 'argmax(gt_score)' in m]
    assert len(said) == 1 and 'Mixup/CutMix' in said[0]
    # the class means of the two steps were fed the dominant classes, not gt_label
    counts = model.guidance.mapping.class_count
    assert counts.tolist() == (2 * torch.bincount(dominant, minlength=5)).tolist()


# --------------------------------------------------------------------- 6. single values


def test_single_values_where_sequences_are_expected():
    model = build_model(tiny_backbone_cfg(guided_layers=1, out_indices=2, bias_tuning='norm'))
    assert model.guided_layers == [1] and model.out_indices == [2]
    assert model.bias_tuning == ('norm', )
    assert model.layers[0].ln1.bias.requires_grad


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(bias_tuning='kv'), ValueError, r"unknown bias_tuning name 'kv'; choose from \('q', 'k', "
     r"'v', 'proj', 'fc1', 'fc2', 'norm'\); a string is one name: for several, write "
     r"\('k', 'v'\)"),
    (dict(bias_tuning='bias'), ValueError, r"unknown bias_tuning name 'bias'; choose from"),
    (dict(bias_tuning=('k', 1)), TypeError, r'bias_tuning must be a name or a list/tuple of '
     'names'),
    (dict(guided_layers='11'), TypeError, r"guided_layers must be an int or a list/tuple of "
     r"ints .*got '11'"),
    (dict(guided_layers=(1.0, )), TypeError, r'guided_layers must be an int'),
    (dict(out_indices=True), TypeError, r'out_indices must be an int'),
])
def test_sequence_arguments_name_the_culprit(kwargs, error, match):
    with pytest.raises(error, match=match):
        build_model(tiny_backbone_cfg(**kwargs))
