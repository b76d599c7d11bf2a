"""The segmentation guidance options: ignore_classes and detach_samples."""
import pytest
import torch

from mmdavpt.models import SemanticMapping
from mmdavpt.models.backbones import GuidanceTaps
from mmdavpt.models.guidance import drop_ignored_classes
from mmdavpt.models.losses import PatchPromptLoss

from conftest import seg_samples, tiny_seg_model


def test_ignored_classes_are_not_accumulated_nor_clustered():
    m = SemanticMapping(5, 2, 4, ignore_classes=(0, ))
    feats = torch.eye(4)[[0, 1, 1, 2, 2, 3]] + 0.01 * torch.arange(6.)[:, None]
    m.accumulate(feats, torch.tensor([0, 1, 2, 3, 4, 0]))
    assert m.class_count.tolist() == [0, 1, 1, 1, 1]
    result = m.remap()
    assert result.num_seen_classes == 4
    c2p = m.class_to_prompt.tolist()
    assert c2p[1] == c2p[2] and c2p[3] == c2p[4] and c2p[1] != c2p[3]


def test_ignored_classes_free_prompts_for_the_others():
    # 5 classes, 4 prompts: without class 0 each of the 4 others gets its own prompt
    m = SemanticMapping(5, 4, 4, ignore_classes=(0, ))
    m.accumulate(torch.randn(5, 4), torch.arange(5))
    m.remap()
    assert m.class_to_prompt[1:].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize('bad,match', [((5, ), r'\[5\] are not classes'),
                                       ((0, 1, 2, 3, 4), 'leaves none')])
def test_bad_ignore_classes_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        SemanticMapping(5, 2, 4, ignore_classes=bad)


def test_drop_ignored_classes():
    labels = torch.tensor([[0, 1, -1, 2], [0, 0, 2, 1]])
    positive = torch.tensor([[True, True, True], [True, True, True]])
    ignored = torch.tensor([True, False, False])
    new_labels, new_positive = drop_ignored_classes(labels, positive, ignored)
    assert new_labels.tolist() == [[-1, 1, -1, 2], [-1, -1, 2, 1]]
    assert new_positive.tolist() == [[False, True, True], [False, True, True]]


def test_segmentor_leaves_ignored_classes_out_of_losses_and_mapping():
    masks = torch.ones(2, 1, 32, 32, dtype=torch.long)
    masks[:, :, :24] = 0  # class 0 on 3/4 of the patches, class 1 on the rest
    torch.manual_seed(0)
    model = tiny_seg_model(fixed_mapping=True, ignore_classes=(0, ))
    model.train()
    inputs = torch.randn(2, 3, 32, 32)
    losses = model.loss(inputs, seg_samples(masks))
    assert model.guidance.mapping.class_count.tolist() == [0, 8, 0, 0]  # 2 x 4 class-1 patches
    # the guidance losses see only the class-1 patches: the same model without ignore_classes
    # on masks whose class-0 pixels are the ignore index gives the same losses
    masks_ignored = masks.clone()
    masks_ignored[:, :, :24] = 255
    torch.manual_seed(0)
    plain = tiny_seg_model(fixed_mapping=True)
    plain.load_state_dict(model.state_dict())
    plain.train()
    reference = plain.loss(inputs, seg_samples(masks_ignored))
    for key in ('loss_ml_xp', 'loss_ml_pcls'):
        assert losses[key].item() == pytest.approx(reference[key].item(), rel=1e-5)


def test_detach_samples_stops_the_gradient_at_the_samples():
    g = torch.Generator().manual_seed(0)
    taps = GuidanceTaps(*(torch.randn(*shape, generator=g).requires_grad_()
                          for shape in [(3, 8), (3, 8), (2, 8), (2, 5, 8), (2, 5, 8), (2, 5, 8)]))
    patch_prompt = torch.tensor([[0, 0, 1, -1, 1], [2, 2, 2, 2, -1]])
    attached = PatchPromptLoss(1.0)(taps, patch_prompt)
    detached = PatchPromptLoss(1.0, detach_samples=True)(taps, patch_prompt)
    assert detached.item() == pytest.approx(attached.item())
    grad_mhsa, grad_prompt = torch.autograd.grad(attached, [taps.patch_mhsa, taps.prompt_query])
    assert grad_mhsa.abs().sum() > 0
    (grad_prompt_detached, ) = torch.autograd.grad(detached, [taps.prompt_query])
    assert torch.allclose(grad_prompt_detached, grad_prompt)
    assert detached.grad_fn is not None
    with pytest.raises(RuntimeError):  # no path from the detached loss to the samples
        torch.autograd.grad(detached, [taps.patch_mhsa])
