
import pytest
import torch
import torch.nn.functional as F

from mmdavpt.models.backbones import GuidanceTaps
from mmdavpt.models.losses import (
    ClsPromptLoss,
    PatchPromptLoss,
    prompt_anchor_loss,
    prompts_present,
)

from conftest import reference_loss


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_prompt_anchor_loss_matches_reference(seed):
    g = torch.Generator().manual_seed(seed)
    samples = torch.randn(12, 8, generator=g, dtype=torch.float64)
    prompts = torch.randn(4, 8, generator=g, dtype=torch.float64)
    positive = torch.zeros(12, 4, dtype=torch.bool)
    positive[torch.arange(12), torch.randint(0, 3, (12, ), generator=g)] = True  # prompt 3: none
    for margin, temperature in [(0.1, 1 / 32), (0.2, 0.5), (0.0, 1.0)]:
        got = prompt_anchor_loss(samples, prompts, positive, margin, temperature)
        want = reference_loss(samples, prompts, positive, margin, temperature)
        assert got.item() == pytest.approx(want, rel=1e-5)


def test_prompt_without_positives_only_in_negative_term():
    samples = torch.randn(6, 4)
    prompts = torch.randn(3, 4)
    positive = torch.zeros(6, 3, dtype=torch.bool)
    positive[:, 0] = True  # prompts 1 and 2 have no positive
    got = prompt_anchor_loss(samples, prompts, positive, 0.1, 0.1)
    assert got.item() == pytest.approx(reference_loss(samples, prompts, positive, 0.1, 0.1),
                                       rel=1e-5)
    none = torch.zeros(6, 3, dtype=torch.bool)  # no positive at all: negative term only
    assert prompt_anchor_loss(samples, prompts, none, 0.1, 0.1).item() == pytest.approx(
        reference_loss(samples, prompts, none, 0.1, 0.1), rel=1e-5)


def test_loss_pulls_positives_and_is_stable_in_low_precision():
    samples = torch.randn(10, 16)
    prompts = torch.randn(2, 16, requires_grad=True)
    positive = torch.zeros(10, 2, dtype=torch.bool)
    positive[:5, 0] = positive[5:, 1] = True
    loss = prompt_anchor_loss(samples, prompts, positive)
    loss.backward()
    # a small step against the gradient lowers the loss
    with torch.no_grad():
        stepped = prompt_anchor_loss(samples, prompts - 1e-2 * prompts.grad, positive)
    assert stepped < loss
    half = prompt_anchor_loss(samples.bfloat16(), prompts.detach().bfloat16(), positive)
    assert torch.isfinite(half) and half.dtype == torch.float32
    # float16 (CUDA autocast) features whose squared norm overflows float16 (> 65504): the loss
    # upcasts first, so it equals the float32 loss of the same values
    big = (samples * 300).half()
    for s in (big, big.reshape(2, 5, 16)):
        got = prompt_anchor_loss(s, prompts.detach().half(), positive.reshape(*s.shape[:-1], 2))
        want = prompt_anchor_loss(big.float(), prompts.detach().half().float(), positive)
        assert torch.isfinite(got) and got.item() == pytest.approx(want.item(), rel=1e-5)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match='positive must be'):
        prompt_anchor_loss(torch.randn(3, 4), torch.randn(2, 4), torch.zeros(3, 3, dtype=bool))
    with pytest.raises(ValueError, match='prompt_side'):
        PatchPromptLoss(prompt_side='key')
    with pytest.raises(ValueError, match='sample_side'):
        PatchPromptLoss(sample_side='attention_map')


def test_cls_key_prompt_side_was_removed():
    """prompt_side='key' was tried and removed (docs/reports/evidence.md); the error names the
    rest."""
    with pytest.raises(ValueError, match=r"ClsPromptLoss must be one of \('query', 'raw'\), "
                                         r"got 'key'$"):
        ClsPromptLoss(prompt_side='key')


def _taps(B=2, N=5, M=3, D=8):
    g = torch.Generator().manual_seed(0)
    return GuidanceTaps(prompt_query=torch.randn(M, D, generator=g),
                        prompt_raw=torch.randn(M, D, generator=g),
                        cls_query=torch.randn(B, D, generator=g),
                        patch_mhsa=torch.randn(B, N, D, generator=g),
                        patch_mhsa_proj=torch.randn(B, N, D, generator=g),
                        block_input=torch.randn(B, N, D, generator=g))


def test_loss_modules_select_the_right_tensors():
    taps = _taps()
    patch_prompt = torch.tensor([[0, 0, 1, -1, 1], [2, 2, 2, 2, -1]])
    present = prompts_present(patch_prompt, 3)
    assert present.tolist() == [[True, True, False], [False, False, True]]
    keep = patch_prompt.flatten() >= 0
    want = 0.3 * prompt_anchor_loss(taps.patch_mhsa.reshape(-1, 8)[keep], taps.prompt_query,
                                    F.one_hot(patch_prompt.flatten()[keep], 3).bool())
    assert PatchPromptLoss(0.3)(taps, patch_prompt).item() == pytest.approx(want.item())
    want = prompt_anchor_loss(taps.block_input.mean(1), taps.prompt_raw, present)
    got = PatchPromptLoss(1.0, sample_side='block_input_mean', prompt_side='raw')(taps,
                                                                                patch_prompt)
    assert got.item() == pytest.approx(want.item())
    want = prompt_anchor_loss(taps.patch_mhsa.mean(1), taps.prompt_query, present)
    got = PatchPromptLoss(1.0, sample_side='mhsa_mean')(taps, patch_prompt)
    assert got.item() == pytest.approx(want.item())
    want = 0.2 * prompt_anchor_loss(taps.cls_query, taps.prompt_query, present)
    assert ClsPromptLoss(0.2)(taps, present).item() == pytest.approx(want.item())


@pytest.mark.parametrize('sample_side,field,pooled', [
    ('mhsa', 'patch_mhsa', False), ('mhsa_proj', 'patch_mhsa_proj', False),
    ('mhsa_mean', 'patch_mhsa', True), ('mhsa_proj_mean', 'patch_mhsa_proj', True),
    ('block_input_mean', 'block_input', True)])
def test_every_sample_side_matches_the_loop_reference(sample_side, field, pooled):
    """Each sample side reads its own tap (all taps differ, so a wrong one would show)."""
    taps = _taps()
    patch_prompt = torch.tensor([[0, 0, 1, -1, 1], [2, 2, 2, 2, -1]])
    loss = PatchPromptLoss(0.5, sample_side=sample_side)
    assert loss.sample_tap == field
    source = getattr(taps, field)
    if pooled:
        samples, positive = source.mean(1), prompts_present(patch_prompt, 3)
    else:
        keep = patch_prompt.flatten() >= 0
        samples = source.reshape(-1, 8)[keep]
        positive = F.one_hot(patch_prompt.flatten()[keep], 3).bool()
    want = 0.5 * reference_loss(samples, taps.prompt_query, positive, 0.1, 1 / 32)
    assert loss(taps, patch_prompt).item() == pytest.approx(want, rel=1e-5)
    others = {f for f in ('patch_mhsa', 'patch_mhsa_proj', 'block_input') if f != field}
    for other in others:  # the loss depends on its tap only
        moved = GuidanceTaps(**{**vars(taps), other: getattr(taps, other) + 1.})
        assert loss(moved, patch_prompt).item() == loss(taps, patch_prompt).item()


@pytest.mark.parametrize('prompt_side,field', [
    ('query', 'prompt_query'), ('raw', 'prompt_raw')])
def test_cls_prompt_sides_match_the_loop_reference(prompt_side, field):
    taps = _taps()
    present = torch.tensor([[True, True, False], [False, False, True]])
    want = 0.2 * reference_loss(taps.cls_query, getattr(taps, field), present, 0.1, 1 / 32)
    got = ClsPromptLoss(0.2, prompt_side=prompt_side)(taps, present)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_batched_strided_samples_with_ignored_patches_equal_the_gathered_loss():
    """B x N x D patch views (read in place, ignored patches masked) = the gathered N x D loss."""
    g = torch.Generator().manual_seed(3)
    tokens = torch.randn(2, 1 + 2 + 6, 8, generator=g, dtype=torch.float64)
    prompts = torch.randn(3, 8, generator=g, dtype=torch.float64)
    patch_prompt = torch.tensor([[0, 0, 1, -1, 1, 2], [2, -1, 2, 2, -1, 0]])
    keep = patch_prompt >= 0
    grads = []
    for batched in (True, False):
        t, p = tokens.clone().requires_grad_(), prompts.clone().requires_grad_()
        patches = t[:, 3:]  # strided, as the backbone's patch slice
        if batched:
            positive = F.one_hot(patch_prompt.clamp(min=0), 3).bool() & keep[..., None]
            loss = prompt_anchor_loss(patches, p, positive, 0.1, 0.5, valid=keep)
        else:
            positive = F.one_hot(patch_prompt[keep], 3).bool()
            loss = prompt_anchor_loss(patches[keep], p, positive, 0.1, 0.5)
            want = reference_loss(patches[keep].detach(), prompts, positive, 0.1, 0.5)
            assert loss.item() == pytest.approx(want, rel=1e-6)  # float32 inside
        loss.backward()
        grads.append((loss.detach(), t.grad, p.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    assert grads[0][1][:, :3].abs().sum() == 0 and grads[0][1][1, 3 + 1].abs().sum() == 0
