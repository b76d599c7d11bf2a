"""What a GPU run of the models does differently, tested on the CPU (the tools' CUDA paths:
tests/test_tools/; on a GPU: tools/analysis/gpu_check.py).

- Buffers on an accelerator: :class:`FakeDeviceTensor` behaves as a CUDA tensor does towards the
  CPU (``.numpy()`` refuses, an op mixing it with a CPU tensor that is not a scalar raises, copies
  and ``.to`` move), so the mapping's k-means round trip is checked without a GPU.
- Mixed precision: the guidance losses stay float32 inside an autocast region, and a float16
  autocast step with a gradient scaler (``--amp`` on CUDA: ``AmpOptimWrapper``) finds no
  overflow and updates the prompts as the float32 step does.
"""
import pytest
import torch
from mmpretrain.structures import DataSample
from torch.utils import _pytree as pytree

from mmdavpt.models import SemanticMapping
from mmdavpt.models.backbones import GuidanceTaps
from mmdavpt.models.losses import ClsPromptLoss, PatchPromptLoss
from mmdavpt.models.losses.prompt_metric import prompt_anchor_loss
from mmdavpt.registry import build_model

from conftest import tiny_classifier_cfg


class FakeDeviceTensor(torch.Tensor):
    """A CPU tensor that follows CUDA's rules towards CPU tensors.

    ``.numpy()`` raises; ``.cpu()`` returns a plain tensor; ``.to(t)`` of a plain tensor with a
    fake one moves it there; an op that mixes a fake tensor with a plain tensor of one element or
    more dimensions raises, except ``copy_`` (copies cross devices), reading with CPU indices,
    and assigning to ``t[int]`` / ``t[slice]`` (a copy).
    """

    MIXING_ALLOWED = {torch.Tensor.copy_, torch.Tensor.to, torch.Tensor.__getitem__}

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.numpy:
            raise TypeError("can't convert fake-device tensor to numpy. Use Tensor.cpu() to "
                            'copy the tensor to host memory first.')
        if func is torch.Tensor.cpu:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs).as_subclass(torch.Tensor)
        basic_setitem = func is torch.Tensor.__setitem__ and isinstance(args[1], (int, slice))
        if func not in cls.MIXING_ALLOWED and not basic_setitem:
            leaves = pytree.tree_leaves((args, kwargs))
            if any(isinstance(t, cls) for t in leaves) and any(
                    type(t) is torch.Tensor and t.dim() > 0 for t in leaves):
                raise RuntimeError(f'{func.__name__}: expected all tensors to be on the same '
                                   'device, but found the fake device and cpu')
        return super().__torch_function__(func, types, args, kwargs)


def on_fake_device(module: torch.nn.Module) -> torch.nn.Module:
    for name, buf in module.named_buffers():
        module._buffers[name] = buf.as_subclass(FakeDeviceTensor)
    return module


def test_fake_device_refuses_what_cuda_refuses():
    x = torch.arange(4.).as_subclass(FakeDeviceTensor)
    with pytest.raises(TypeError, match='numpy'):
        x.numpy()
    with pytest.raises(RuntimeError, match='same device'):
        x + torch.ones(4)
    with pytest.raises(RuntimeError, match='same device'):
        x[torch.tensor([0, 1]).as_subclass(FakeDeviceTensor)] = torch.ones(2)
    assert type(x + torch.tensor(1.)) is FakeDeviceTensor  # CPU scalars mix, as on CUDA
    assert type(x.cpu()) is torch.Tensor and x.cpu().numpy().tolist() == [0, 1, 2, 3]
    x[0] = torch.tensor(5.)
    x.copy_(torch.zeros(4))
    assert type(torch.ones(4).to(x)) is FakeDeviceTensor


def class_features(num_classes: int, dim: int, per_class: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=g) * 3
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return centers[labels] + torch.randn(len(labels), dim, generator=g), labels


@pytest.mark.parametrize('num_classes,num_prompts', [(12, 4), (3, 5)])
def test_remap_with_the_buffers_on_an_accelerator(num_classes, num_prompts):
    """k-means runs on the CPU and its results go back to the buffers' device; the mapping is the
    one computed on the CPU (first clustering, then warm-started)."""
    feats, labels = class_features(num_classes, 8, per_class=3)
    cpu = SemanticMapping(num_classes, num_prompts, 8, seed=0)
    dev = on_fake_device(SemanticMapping(num_classes, num_prompts, 8, seed=0))
    for _ in range(2):
        cpu.accumulate(feats, labels)
        dev.accumulate(feats.as_subclass(FakeDeviceTensor), labels.as_subclass(FakeDeviceTensor))
        got, want = dev.remap(), cpu.remap()
        assert (got.moved_fraction, got.num_seen_classes) == (want.moved_fraction, num_classes)
        for name, buf in dev.named_buffers():
            assert type(buf) is FakeDeviceTensor, name  # still on the device
            assert torch.equal(buf.as_subclass(torch.Tensor), cpu.get_buffer(name)), name
    assert int(dev.num_remaps) == 2


def test_warm_remap_of_a_few_classes_on_an_accelerator():
    """Fewer classes seen than prompts after the first mapping: each joins its nearest centroid
    (the path that reads the centroids back to the CPU)."""
    feats, labels = class_features(12, 8, per_class=3)
    dev = on_fake_device(SemanticMapping(12, 4, 8, seed=0))
    dev.accumulate(feats.as_subclass(FakeDeviceTensor), labels.as_subclass(FakeDeviceTensor))
    dev.remap()
    before = dev.class_to_prompt.as_subclass(torch.Tensor).clone()
    few = labels < 2
    dev.accumulate(feats[few].as_subclass(FakeDeviceTensor),
                   labels[few].as_subclass(FakeDeviceTensor))
    result = dev.remap()
    assert result.num_seen_classes == 2
    assert type(dev.class_to_prompt) is FakeDeviceTensor
    # the same data as the first clustering: the classes stay with their centroids
    assert torch.equal(dev.class_to_prompt.as_subclass(torch.Tensor), before)


# ---------------------------------------------------------------------------------------------
def test_prompt_loss_is_float32_inside_autocast():
    """Under --amp the loss's similarity products would otherwise run in bfloat16 (CPU) or
    float16 (CUDA); a temperature of 1/32 multiplies their rounding by 32 in the logits."""
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(4, 49, 64, generator=g) * 5
    prompts = torch.randn(6, 64, generator=g, requires_grad=True)
    positive = torch.rand(4, 49, 6, generator=g) < 0.2
    want = prompt_anchor_loss(samples, prompts, positive)
    (want_grad, ) = torch.autograd.grad(want, prompts)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = prompt_anchor_loss(samples, prompts, positive)
    (got_grad, ) = torch.autograd.grad(got, prompts)  # backward outside, as in training
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-7)


def test_guidance_losses_of_half_precision_taps_are_float32():
    """The taps of an autocast forward are float16 / bfloat16; the losses read them in float32
    (the same value as the float32 loss of the same, rounded, features)."""
    g = torch.Generator().manual_seed(1)
    B, N, M, D = 2, 9, 3, 16
    taps = GuidanceTaps(*(torch.randn(*s, generator=g).half() for s in
                          ((M, D), (M, D), (B, D), (B, N, D), (B, N, D), (B, N, D))))
    patch_prompt = torch.randint(-1, M, (B, N), generator=g)
    image_positive = torch.rand(B, M, generator=g) < 0.5
    with torch.autocast('cpu', dtype=torch.float16):
        xp = PatchPromptLoss(0.1)(taps, patch_prompt)
        pcls = ClsPromptLoss(0.1)(taps, image_positive)
    keep = patch_prompt >= 0
    positive = torch.nn.functional.one_hot(patch_prompt.clamp(min=0), M).bool() & keep[..., None]
    assert xp.dtype == pcls.dtype == torch.float32
    torch.testing.assert_close(xp, 0.1 * prompt_anchor_loss(
        taps.patch_mhsa.float(), taps.prompt_query.float(), positive, valid=keep))
    torch.testing.assert_close(pcls, 0.1 * prompt_anchor_loss(
        taps.cls_query.float(), taps.prompt_query.float(), image_positive))


def test_float16_autocast_step_with_a_gradient_scaler():
    """``--amp`` on CUDA is float16 autocast and a dynamic gradient scaler (``AmpOptimWrapper``,
    initial scale 2^16); the same on the CPU. Every loss is float32 and finite. The guidance
    gradients are larger than the cross-entropy's (a temperature of 1/32), so the first scaled
    backward overflows float16 here: the scaler must skip that step (the weights stay as they
    were, finite) and halve its scale until a step is taken, which then moves the prompts as a
    float32 step does."""
    inputs = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    samples = [DataSample().set_gt_label(c) for c in (0, 1, 2, 3)]
    steps, skipped = {}, 0
    for amp in (False, True):
        torch.manual_seed(0)
        model = build_model(tiny_classifier_cfg(num_classes=5, fixed_mapping=True))
        model.train()
        prompts = model.backbone.prompts[0]
        before = prompts.detach().clone()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.)
        scaler = torch.amp.GradScaler('cpu', init_scale=2.**16, enabled=amp)
        for _ in range(8):
            optimizer.zero_grad()
            with torch.autocast('cpu', dtype=torch.float16, enabled=amp):
                losses = model(inputs, samples, mode='loss')
            assert set(losses) == {'loss_cls', 'loss_ml_xp', 'loss_ml_pcls'}
            for name, value in losses.items():
                assert value.dtype == torch.float32 and torch.isfinite(value), name
            scale = scaler.get_scale() if amp else None
            scaler.scale(sum(losses.values())).backward()
            scaler.step(optimizer)
            scaler.update()
            if not amp or scaler.get_scale() == scale:  # the step was taken
                break
            skipped += 1
            assert scaler.get_scale() == scale / 2 and torch.equal(prompts.detach(), before)
        steps[amp] = prompts.detach() - before
    assert 0 < skipped < 8
    assert steps[True].abs().sum() > 0
    torch.testing.assert_close(steps[True], steps[False], rtol=0.05, atol=1e-3)
