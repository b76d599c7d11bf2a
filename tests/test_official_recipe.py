"""The official recipe's options: positive-term normalisation, optimiser groups and gradient
clipping from config only, and the inert key bias of DA-VPT+."""
import os
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

from mmdavpt.models.losses import ClsPromptLoss, PatchPromptLoss, prompt_anchor_loss
from mmdavpt.registry import build_model
from mmdavpt.utils.params import build_model_on_meta

from conftest import TinyClsDataset, reference_loss, tiny_classifier_cfg

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_METHOD = ROOT / 'configs/classification/_base_/methods/davpt-plus_official.py'
OFFICIAL_DEMO = ROOT / 'configs/demo/vit-s14-imgfocus_davpt-plus-official_animal-mnist-56px.py'


@pytest.mark.parametrize('positive_norm', ['present', 'all'])
@pytest.mark.parametrize('seed', [0, 1])
def test_positive_norm_matches_the_loop_reference(positive_norm, seed):
    g = torch.Generator().manual_seed(seed)
    samples = torch.randn(10, 8, generator=g, dtype=torch.float64)
    prompts = torch.randn(5, 8, generator=g, dtype=torch.float64)
    positive = torch.zeros(10, 5, dtype=torch.bool)
    positive[torch.arange(10), torch.randint(0, 3, (10, ), generator=g)] = True  # 3, 4: none
    for margin, temperature in [(0.1, 1 / 32), (0.02, 1 / 160)]:
        got = prompt_anchor_loss(samples, prompts, positive, margin, temperature,
                                 positive_norm=positive_norm)
        want = reference_loss(samples, prompts, positive, margin, temperature, positive_norm)
        assert got.item() == pytest.approx(want, rel=1e-5)
    # all prompts with a positive: the two normalisations agree
    full = F.one_hot(torch.arange(10) % 5, 5).bool()
    assert prompt_anchor_loss(samples, prompts, full, positive_norm=positive_norm).item() == \
        pytest.approx(reference_loss(samples, prompts, full, 0.1, 1 / 32, 'present'), rel=1e-5)


def test_loss_modules_pass_positive_norm_and_refuse_unknown_values():
    g = torch.Generator().manual_seed(0)
    taps = SimpleNamespace(prompt_query=torch.randn(3, 8, generator=g),
                           prompt_raw=torch.randn(3, 8, generator=g),
                           cls_query=torch.randn(2, 8, generator=g),
                           patch_mhsa=torch.randn(2, 4, 8, generator=g),
                           block_input=torch.randn(2, 4, 8, generator=g))
    patch_prompt = torch.tensor([[0, 0, 1, -1], [0, 0, 0, 0]])  # prompt 2: no positive
    present = torch.tensor([[True, True, False], [True, False, False]])
    for norm in ('present', 'all'):
        got = PatchPromptLoss(0.5, positive_norm=norm)(taps, patch_prompt)
        keep = patch_prompt.flatten() >= 0
        want = 0.5 * reference_loss(taps.patch_mhsa.reshape(-1, 8)[keep], taps.prompt_query,
                               F.one_hot(patch_prompt.flatten()[keep], 3).bool(), 0.1, 1 / 32,
                               norm)
        assert got.item() == pytest.approx(want, rel=1e-5)
        got = ClsPromptLoss(0.5, positive_norm=norm)(taps, present)
        want = 0.5 * reference_loss(taps.cls_query, taps.prompt_query, present, 0.1, 1 / 32, norm)
        assert got.item() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match='positive_norm'):
        ClsPromptLoss(positive_norm='mean')
    with pytest.raises(ValueError, match='positive_norm'):
        prompt_anchor_loss(torch.randn(2, 4), torch.randn(2, 4), torch.eye(2, dtype=bool),
                           positive_norm='P+')


def _official_model():
    backbone = Config.fromfile(str(OFFICIAL_METHOD), import_custom_modules=False).model.backbone
    return build_model(tiny_classifier_cfg(bias_tuning=backbone.bias_tuning,
                                           train_cls_token=backbone.train_cls_token))


def test_official_optimizer_groups_and_value_clipping_come_from_config_alone():
    cfg = Config.fromfile(str(OFFICIAL_METHOD), import_custom_modules=False)
    model = _official_model()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(g['params'][0])]: g['weight_decay'] for g in wrapper.optimizer.param_groups}
    assert set(decay) == {n for n, p in model.named_parameters() if p.requires_grad}
    base = cfg.optim_wrapper.optimizer.weight_decay
    assert base == 0.05
    for name, wd in decay.items():
        if name == 'head.fc.weight':
            assert wd == pytest.approx(3.0)  # the official wd_head default
        elif name.startswith('backbone.prompts.') or name == 'backbone.cls_token':
            assert wd == base, name
        else:  # biases: k/v offsets, proj, fc2, LayerNorms; the head's bias
            assert ('bias' in name) and wd == 0, name
    assert any(n.endswith('k_bias_delta') for n in decay)
    assert any(n.endswith('ln1.bias') for n in decay)
    # gradient VALUES clipped at 10 before the step, as torch.nn.utils.clip_grad_value_
    assert wrapper.clip_grad_kwargs == dict(clip_value=10.)
    head = model.head.fc.weight
    wrapper.backward((head * 1e3).sum() + (model.backbone.cls_token * -1e3).sum())
    wrapper.step()
    assert head.grad.abs().max() == 10. and model.backbone.cls_token.grad.min() == -10.


def test_official_demo_config():
    cfg = Config.fromfile(str(OFFICIAL_DEMO), import_custom_modules=False)
    assert cfg.train_dataloader.sampler == dict(type='ClassBalancedSampler', batch_size=32,
                                                samples_per_class=2)
    assert cfg.train_dataloader.batch_size == 32
    method = Config.fromfile(str(OFFICIAL_METHOD), import_custom_modules=False)
    assert cfg.optim_wrapper.clip_grad == method.optim_wrapper.clip_grad
    assert cfg.optim_wrapper.paramwise_cfg == method.optim_wrapper.paramwise_cfg
    for key in ('loss_xp', 'loss_pcls'):
        assert cfg.model.guidance[key] == method.model.guidance[key]
    assert tuple(cfg.model.backbone.bias_tuning) == tuple(method.model.backbone.bias_tuning)
    # the demo it extends is unchanged: M = 5 guided prompts for 10 classes
    assert cfg.model.backbone.num_guided_prompts == 5 < cfg.model.head.num_classes


def test_key_bias_gets_exactly_zero_gradient_and_value_bias_does_not():
    """Adding b to every key adds q . b to all of a query's logits: softmax ignores it."""
    torch.manual_seed(0)
    model = build_model(tiny_classifier_cfg(bias_tuning=('k', 'v'), train_cls_token=True,
                                            fixed_mapping=True))
    model.double().train()
    inputs = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    samples = [DataSample().set_gt_label(c) for c in (0, 1, 2, 3)]
    losses = model.loss(inputs, samples)
    assert set(losses) == {'loss_cls', 'loss_ml_xp', 'loss_ml_pcls'}
    sum(losses.values()).backward()
    k_grads = torch.stack([layer.attn.k_bias_delta.grad for layer in model.backbone.layers])
    v_grads = torch.stack([layer.attn.v_bias_delta.grad for layer in model.backbone.layers])
    assert v_grads.abs().min(dim=1).values.gt(0).all()  # every layer's v bias moves the loss
    assert k_grads.abs().max() <= 1e-12 * v_grads.abs().max()


def test_inert_key_bias_share_of_the_demo_davpt_plus_parameters():
    """docs/official_recipe.md: 4,608 of the demo DA-VPT+'s 36,490 tunable parameters."""
    demo = ROOT / 'configs/demo/vit-s14-imgfocus_davpt-plus_animal-mnist-56px.py'
    cfg = Config.fromfile(str(demo), import_custom_modules=False)
    model = build_model_on_meta(cfg.model, scope=cfg.default_scope)
    tunable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    inert = sum(v for n, v in tunable.items() if n.endswith('k_bias_delta'))
    assert inert == 12 * 384 and sum(tunable.values()) == 36490


class TinyLabelled(TinyClsDataset):
    def get_cat_ids(self, idx):
        return [self.get_data_info(idx)['label']]


def test_official_recipe_trains_with_the_runner(tmp_path):
    """Two epochs of two steps: sampler (and its set_epoch), clipping, groups, losses, mapping."""
    method = Config.fromfile(str(OFFICIAL_METHOD), import_custom_modules=False)
    model = tiny_classifier_cfg(num_classes=5, bias_tuning=method.model.backbone.bias_tuning,
                                train_cls_token=True)
    model['guidance'].update(loss_xp=method.model.guidance.loss_xp.to_dict(),
                             loss_pcls=method.model.guidance.loss_pcls.to_dict())
    runner = Runner(
        model=model, work_dir=str(tmp_path),
        experiment_name=f'{os.path.basename(tmp_path)}-{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=TinyLabelled(5, per_class=2), batch_size=4, num_workers=0,
            sampler=dict(type='ClassBalancedSampler', batch_size=4, samples_per_class=2),
            collate_fn=dict(type='pseudo_collate')),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        optim_wrapper=method.optim_wrapper.to_dict(),
        custom_hooks=[dict(type='SemanticMappingHook')],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=-1)),
        default_scope='mmpretrain', randomness=dict(seed=0))
    before = runner.model.head.fc.weight.detach().clone()
    runner.train()
    sampler = runner.train_dataloader.sampler
    assert len(runner.train_dataloader) == 2 and runner.iter == 4
    assert sampler.seed == 0 and sampler.epoch == 1  # set_epoch reached the sampler
    assert runner.optim_wrapper.clip_grad_kwargs == dict(clip_value=10.)
    assert not torch.equal(before, runner.model.head.fc.weight)
    assert runner.model.guidance.mapping.initialized
