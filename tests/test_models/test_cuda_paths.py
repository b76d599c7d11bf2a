"""What a GPU run does differently, tested on the CPU (docs/performance.md, "GPU checks").

- Buffers on an accelerator: :class:`FakeDeviceTensor` behaves as a CUDA tensor does towards the
  CPU (``.numpy()`` refuses, an op mixing it with a CPU tensor that is not a scalar raises, copies
  and ``.to`` move), so the mapping's k-means round trip is checked without a GPU.
- Mixed precision: the guidance losses stay float32 inside an autocast region, and a float16
  autocast step with a gradient scaler (``--amp`` on CUDA: ``AmpOptimWrapper``) finds no
  overflow and updates the prompts as the float32 step does.
- The GPU check driver (``tools/analysis/gpu_check.py``): timeouts, skipping, one JSON.
"""
import contextlib
import json
import os.path as osp
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample
from torch.utils import _pytree as pytree

from mmdavpt.models import SemanticMapping
from mmdavpt.models.backbones import GuidanceTaps
from mmdavpt.models.losses import ClsPromptLoss, PatchPromptLoss
from mmdavpt.models.losses.prompt_metric import prompt_anchor_loss
from mmdavpt.registry import build_model

from conftest import load_tool, tiny_classifier_cfg

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


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


# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def gpu_check():
    return load_tool('tools/analysis/gpu_check.py')


def fake_check(gpu_check, name, code, timeout_s=30, results=None):
    """A check whose command is ``python -c code``."""
    return gpu_check.Check(name, timeout_s, lambda ctx: [ctx.python, '-c', code],
                           results or (lambda ctx: {'read': True}))


def context(gpu_check, tmp_path):
    return gpu_check.Context(python=sys.executable, device='cpu', dry_run=True,
                             out_dir=str(tmp_path / 'out'), work_dir=str(tmp_path / 'work'),
                             carry_dir=str(tmp_path / 'carry'),
                             checkpoint=str(tmp_path / 'ckpt.pth'))


def test_gpu_check_runs_each_check_on_its_own(gpu_check, tmp_path):
    """A failing, a hanging and a broken-output check do not stop the others; the JSON holds
    every check and the log every check's output."""
    def broken(ctx):
        raise FileNotFoundError('no report')

    checks = [
        fake_check(gpu_check, 'fails', 'import sys; print("bad"); sys.exit(3)'),
        fake_check(gpu_check, 'hangs', 'import time; print("sleeping", flush=True); '
                   'time.sleep(60)', timeout_s=2),
        fake_check(gpu_check, 'no_report', 'print("fine")', results=broken),
        fake_check(gpu_check, 'ok', 'print("fine")'),
        gpu_check.Check('needs_input', 30, lambda ctx: None, lambda ctx: {}, missing='no ckpt'),
    ]
    report = gpu_check.run_checks(context(gpu_check, tmp_path), checks, deadline_s=100)
    saved = json.loads((tmp_path / 'out' / 'gpu_check.json').read_text())
    assert saved['checks'] == report['checks']
    got = {name: c['status'] for name, c in saved['checks'].items()}
    assert got == dict(fails='failed', hangs='timeout', no_report='unreadable', ok='ok',
                       needs_input='skipped')
    assert saved['checks']['fails']['returncode'] == 3
    assert saved['checks']['hangs']['seconds'] < 30
    assert saved['checks']['no_report']['results_error'] == 'FileNotFoundError: no report'
    assert saved['checks']['ok']['results'] == {'read': True}
    assert saved['checks']['needs_input']['reason'] == 'no ckpt'
    log = (tmp_path / 'out' / 'gpu_check.log').read_text()
    assert 'bad' in log and 'sleeping' in log and '===== ok: ok' in log


def test_gpu_check_skips_what_does_not_fit_the_deadline(gpu_check, tmp_path):
    """A check gets at most what is left; one that needs more than is left is skipped; a
    second call with merge keeps the first call's results."""
    checks = [fake_check(gpu_check, 'first', 'import time; time.sleep(1.5)', timeout_s=60),
              fake_check(gpu_check, 'second', 'print(1)')]
    checks[1].min_s = 20
    ctx = context(gpu_check, tmp_path)
    report = gpu_check.run_checks(ctx, checks, deadline_s=21)
    first, second = report['checks']['first'], report['checks']['second']
    assert first['status'] == 'ok' and first['timeout_s'] <= 16
    assert second['status'] == 'skipped' and second['reason'].startswith('deadline')
    again = gpu_check.run_checks(ctx, checks[1:], deadline_s=60, merge=True)
    assert again['checks']['first'] == first and again['checks']['second']['status'] == 'ok'
    assert len(again['calls']) == 2
    fresh = gpu_check.run_checks(ctx, checks[1:], deadline_s=60)
    assert list(fresh['checks']) == ['second']


def test_gpu_check_selects_checks_by_name(gpu_check):
    names = [c.name for c in gpu_check.CHECKS]
    assert gpu_check.select(names, None, None) == names
    assert gpu_check.select(names, 'seg_memory,env', None) == ['env', 'seg_memory']
    assert names[0] == 'env' and len(names) == len(set(names)) == 7
    assert gpu_check.select(names, None, 'env') == names[1:]
    with pytest.raises(ValueError, match='benchmark'):
        gpu_check.select(names, 'benchmark', None)


def test_checkpoint_travels_as_float16(gpu_check, tmp_path):
    """Packed for the device tool (half the bytes), unpacked to float32 there; never written over
    an existing file."""
    state = {'w': torch.randn(8, 8), 'n': torch.tensor(3)}
    torch.save({'state_dict': state, 'meta': {'k': 1}}, tmp_path / 'src.pth')
    meta = gpu_check.pack_checkpoint(str(tmp_path / 'src.pth'), str(tmp_path / 'half.pth'))
    assert 0 < meta['float16_max_rel_error'] < 1e-3 and meta['k'] == 1
    half = torch.load(tmp_path / 'half.pth', weights_only=True)['state_dict']
    assert half['w'].dtype == torch.float16 and half['n'].dtype == torch.int64
    gpu_check.unpack_checkpoint(str(tmp_path / 'half.pth'), str(tmp_path / 'back.pth'))
    back = torch.load(tmp_path / 'back.pth', weights_only=True)['state_dict']
    assert back['w'].dtype == torch.float32
    torch.testing.assert_close(back['w'], state['w'], rtol=1e-3, atol=1e-4)
    assert 'kept' in gpu_check.unpack_checkpoint(str(tmp_path / 'half.pth'),
                                                 str(tmp_path / 'src.pth'))
    with pytest.raises(FileExistsError, match='half.pth'):
        gpu_check.pack_checkpoint(str(tmp_path / 'src.pth'), str(tmp_path / 'half.pth'))
    big = tmp_path / 'big.pth'
    torch.save({'state_dict': {'w': torch.full((2, ), 1e6)}}, big)
    with pytest.raises(ValueError, match='float16'):
        gpu_check.pack_checkpoint(str(big), str(tmp_path / 'big16.pth'))
    assert np.isfinite(meta['float16_max_rel_error'])


def test_training_summary_reads_the_work_dir(gpu_check, tmp_path):
    """The training check's figures come from the scalars mmengine wrote and the best
    checkpoint: finite losses, val accuracy, CUDA memory, the mapping and the AMP loss scale."""
    run = tmp_path / '20260101_000000' / 'vis_data'
    run.mkdir(parents=True)
    rows = [dict(loss=3.0, loss_cls=2.0, loss_ml_xp=1.0, iter=5, time=0.2, memory=900),
            dict(loss=2.0, loss_cls=1.5, loss_ml_xp=0.5, iter=10, time=0.1, memory=950),
            {'accuracy/top1': 61.5, 'step': 1}]
    (run / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
    torch.save(dict(meta=dict(epoch=1), optimizer=dict(loss_scaler=dict(scale=4096.)),
                    state_dict={'guidance.mapping.num_remaps': torch.tensor(2),
                                'guidance.mapping.class_to_prompt': torch.tensor([1, 0, 1])}),
               tmp_path / 'best_accuracy_top1_epoch_1.pth')
    summary = gpu_check.training_summary(str(tmp_path))
    assert summary['losses_finite'] and summary['last_logged_iter'] == 10
    assert summary['first_losses']['loss'] == 3.0 and summary['last_losses']['loss_ml_xp'] == 0.5
    assert summary['val_top1'] == [dict(epoch=1, top1=61.5)]
    assert summary['max_memory_mb'] == 950 and summary['seconds_per_iter'] == 0.1
    assert summary['num_remaps'] == 2 and summary['class_to_prompt'] == [1, 0, 1]
    assert summary['loss_scale'] == 4096.
    rows[1]['loss_ml_xp'] = float('nan')
    (run / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
    assert not gpu_check.training_summary(str(tmp_path))['losses_finite']
    with pytest.raises(FileNotFoundError, match='no training scalars'):
        gpu_check.training_summary(str(tmp_path / 'nothing'))


def test_seg_memory_cuda_report(tmp_path, monkeypatch, capsys):
    """The CUDA branch of seg_memory's main (tables, the comparison with the meta count, the
    JSON), with the GPU children replaced by fixed results."""
    seg_memory = load_tool('tools/analysis/seg_memory.py')
    GiB = 2**30
    children = []

    def run(fn, kwds):
        kind, kwargs = fn.__name__, kwds
        children.append((kind, kwargs))
        if kind == 'measure_cuda_memory':
            extra = GiB if kwargs['with_cp'] else 2 * GiB
            return dict(static=GiB, peak_no_guidance=5 * GiB + extra, peak=5 * GiB + extra + 2**22,
                        reserved=8 * GiB, step_s=0.25, guidance=True, gpu='fake')
        assert kind == 'count_training_memory'
        return dict(static=GiB, peak=(6 if kwargs['with_cp'] else 7) * GiB)

    monkeypatch.setattr(seg_memory, 'measuring_pool',
                        lambda **_: contextlib.nullcontext(SimpleNamespace(apply=run)))
    out = tmp_path / 'seg.json'
    report = seg_memory.main(['cfg.py', '--device', 'cuda', '--out', str(out)])
    assert [k for k, _ in children] == ['measure_cuda_memory', 'measure_cuda_memory',
                                        'count_training_memory', 'count_training_memory']
    assert all(kw['size'] == 512 and kw['batch'] == 2 for _, kw in children)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    cmp = {c['with_cp']: c for c in report['measured_vs_counted']}
    assert cmp[False]['ratio'] == 1.0 and cmp[True]['ratio'] == 1.0
    assert cmp[True]['guidance_bytes'] == 2**22
    printed = capsys.readouterr().out
    assert 'Measured on CUDA: 2 x 512x512' in printed and '| 1.000 | 4.0 |' in printed
    with pytest.raises(SystemExit):
        seg_memory.parse_args(['cfg.py', '--device', 'cuda', '--full-size', '0'])
