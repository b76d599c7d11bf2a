import pytest
import torch
from mmpretrain.structures import DataSample

from mmdavpt.models import guidance as guidance_module
from mmdavpt.models import patch_labels_from_mask
from mmdavpt.registry import build_model

from conftest import seg_samples, tiny_backbone_cfg, tiny_classifier_cfg, tiny_seg_model


def test_patch_labels_majority_and_ignore():
    mask = torch.full((1, 4, 6), 255)
    mask[0, :2, :2] = torch.tensor([[1, 1], [2, 255]])  # patch (0,0): 1 wins, 255 does not vote
    mask[0, :2, 2:4] = torch.tensor([[3, 3], [255, 255]])  # patch (0,1): 3
    mask[0, 2:, :2] = torch.tensor([[0, 2], [2, 0]])  # tie 0 vs 2 -> lower index
    # patch (1,1) and (0,2), (1,2): only ignore pixels -> -1
    labels = patch_labels_from_mask(mask, 2, num_classes=4)
    assert labels.tolist() == [[[1, 3, -1], [0, -1, -1]]]
    # sizes not divisible by the patch: padded with the ignore index at the bottom-right
    odd = patch_labels_from_mask(torch.ones(1, 1, 3, 3, dtype=torch.long), 2, 4)
    assert odd.tolist() == [[[1, 1], [1, 1]]]
    with pytest.raises(ValueError, match=r'values \[7\] outside \[0, 4\)'):
        patch_labels_from_mask(torch.tensor([[[7, 255]]]), 2, 4)


def _cls_batch(model, labels):
    inputs = torch.randn(len(labels), 3, 32, 32)
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    return inputs, samples


def test_classifier_adds_both_guidance_losses_and_trains_only_prompts_and_head():
    model = build_model(tiny_classifier_cfg(fixed_mapping=True))
    model.train()
    inputs, samples = _cls_batch(model, [0, 1, 2, 3])
    losses = model.loss(inputs, samples)
    assert set(losses) == {'loss_cls', 'loss_ml_xp', 'loss_ml_pcls'}
    assert all(torch.isfinite(v) for v in losses.values())
    # the logged 'loss' is the total that is optimised, not the cross-entropy alone
    total, log_vars = model.parse_losses(losses)
    assert log_vars['loss'].item() == pytest.approx(sum(v.item() for v in losses.values()))
    assert log_vars['loss'].item() > losses['loss_cls'].item()
    sum(losses.values()).backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads == {n for n, p in model.named_parameters() if p.requires_grad}
    assert grads == {'backbone.prompts.0', 'backbone.prompts.1', 'backbone.prompts.2',
                     'head.fc.weight', 'head.fc.bias'}
    # the training pass fed the class statistics of the next remap
    assert model.guidance.mapping.class_count[:4].tolist() == [1, 1, 1, 1]
    # eval: nothing recorded, plain predictions
    model.eval()
    preds = model.predict(inputs, samples)
    assert len(preds) == 4 and not any(
        isinstance(v, torch.Tensor) for v in vars(model.backbone).values())


def test_guidance_losses_follow_the_mapping():
    model = build_model(tiny_classifier_cfg(num_classes=4, fixed_mapping=True))
    model.train()
    inputs, samples = _cls_batch(model, [0, 1, 2, 3])
    torch.manual_seed(0)
    model.guidance.mapping.class_to_prompt.copy_(torch.tensor([0, 0, 1, 1]))
    a = model.loss(inputs, samples)['loss_ml_xp']
    model.guidance.mapping.class_to_prompt.copy_(torch.tensor([0, 1, 0, 1]))
    b = model.loss(inputs, samples)['loss_ml_xp']
    assert not torch.isclose(a, b)


def test_guidance_needs_guided_prompts():
    with pytest.raises(ValueError, match='num_guided_prompts > 0'):
        build_model(tiny_classifier_cfg(num_guided_prompts=0))


def test_segmentor_uses_patch_majority_labels():
    model = tiny_seg_model(fixed_mapping=True)
    model.train()
    masks = torch.randint(0, 4, (2, 1, 32, 32))
    masks[1, :, :16] = 255
    samples = seg_samples(masks)
    losses = model.loss(torch.randn(2, 3, 32, 32), samples)
    assert {'loss_ml_xp', 'loss_ml_pcls', 'decode.loss_ce'} <= set(losses)
    assert all(torch.isfinite(v) for k, v in losses.items() if k.startswith('loss'))
    # 16 patches per image, the top half of image 1 ignored -> 16 + 8 labelled patches
    assert model.guidance.mapping.class_count.sum() == 24
    assert model.mapping_features(torch.randn(2, 3, 32, 32), samples)[0].shape == (24, 32)


@pytest.mark.parametrize('sample_side,field', [
    ('mhsa', 'patch_mhsa'), ('mhsa_proj', 'patch_mhsa_proj'), ('mhsa_mean', 'patch_mhsa'),
    ('mhsa_proj_mean', 'patch_mhsa_proj'), ('block_input_mean', 'block_input'), (None, None)])
def test_distributed_gather_takes_only_what_the_losses_read(sample_side, field, monkeypatch):
    """Across ranks, the CLS query and the one B x N x D tap the sample side reads are gathered;
    the other taps stay as they are (a stand-in gather doubles the batch)."""
    backbone = build_model(tiny_backbone_cfg())
    loss_xp = dict(type='PatchPromptLoss', sample_side=sample_side) if sample_side else None
    guidance = guidance_module.PromptGuidance(backbone, 4, loss_xp=loss_xp,
                                              loss_pcls=dict(type='ClsPromptLoss'))
    _, taps, _ = backbone.forward_with_taps(torch.randn(2, 3, 32, 32))
    monkeypatch.setattr(guidance_module, 'gather_batch', lambda x: torch.cat([x, x]))
    gathered = guidance._gather_taps(taps[2])
    for name in ('cls_query', 'patch_mhsa', 'patch_mhsa_proj', 'block_input'):
        want = 4 if name in ('cls_query', field) else 2
        assert getattr(gathered, name).shape[0] == want, name
    assert gathered.prompt_query is taps[2].prompt_query
