import copy

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models import VisionTransformer
from torch.utils._python_dispatch import TorchDispatchMode

from mmdavpt.models import DAVPTViT
from mmdavpt.registry import build_model

from conftest import TINY_ARCH, tiny_backbone_cfg


def _plain(**kwargs):
    return DAVPTViT(arch=TINY_ARCH, img_size=32, patch_size=8, num_prompts=0,
                    num_guided_prompts=0, **kwargs)


def _randomise(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


@pytest.mark.parametrize('layer_scale', [0., 1e-1])
def test_no_prompts_equals_mmpretrain_vit(layer_scale):
    ref = _randomise(VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=8,
                                       layer_scale_init_value=layer_scale,
                                       out_indices=(0, 2), out_type='cls_token'))
    ref.eval()  # BaseBackbone.train() returns None: no chaining
    ours = _plain(layer_scale_init_value=layer_scale, out_indices=(0, 2)).eval()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert not unexpected and all(k.startswith('prompts.') for k in missing)
    x = torch.randn(2, 3, 40, 48)  # another size: position embedding resized on the fly
    for a, b in zip(ref(x), ours(x)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    ref.out_type = ours.out_type = 'featmap'
    for a, b in zip(ref(x), ours(x)):
        assert b.shape == (2, 32, 5, 6)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_arch_presets():
    # MMPretrain's arch names keep their meaning: 'dinov2-s' with DINOv2's patches and LayerScale
    s = DAVPTViT(arch='dinov2-s', patch_size=14, layer_scale_init_value=1e-5, img_size=56,
                 num_prompts=0, num_guided_prompts=0)
    assert (s.embed_dims, s.num_layers, s.patch_size) == (384, 12, 14)
    assert s.layers[0].attn.gamma1.weight.shape == (384, )  # LayerScale as DINOv2
    b = DAVPTViT(arch='b', img_size=32, num_prompts=0, num_guided_prompts=0)
    assert (b.embed_dims, b.num_layers, b.patch_size) == (768, 12, 16)
    assert isinstance(b.layers[0].attn.gamma1, torch.nn.Identity)
    ref = VisionTransformer(arch='dinov2-s', patch_size=14, img_size=56,
                            layer_scale_init_value=1e-5)
    assert set(ref.state_dict()) == set(s.state_dict()) - {
        f'prompts.{i}' for i in range(12)}
    with torch.device('meta'):
        upstream_s = DAVPTViT(arch='s', img_size=32, num_prompts=0, num_guided_prompts=0)
    assert (upstream_s.embed_dims, upstream_s.num_layers) == (768, 8)  # MMPretrain's 's'


def test_prompt_layout_deep_and_shallow():
    model = _randomise(build_model(tiny_backbone_cfg(out_type='raw', out_indices=(0, 1, 2))))
    model.eval()
    outs = model(torch.randn(2, 3, 32, 32))
    # layers 0, 1 carry 3 prompts, the guided last layer 2: 1 CLS + prompts + 16 patches
    assert [o.shape[1] for o in outs] == [20, 20, 19]
    assert [p.shape for p in model.prompts] == [(3, 32), (3, 32), (2, 32)]
    shallow = build_model(tiny_backbone_cfg(out_type='raw', out_indices=(0, 2),
                                            prompt_mode='shallow', num_guided_prompts=0))
    assert [o.shape[1] for o in shallow.eval()(torch.randn(1, 3, 32, 32))] == [20, 20]
    assert [p.shape[0] for p in shallow.prompts] == [3, 0, 0]


def test_vpt_init_range():
    model = build_model(tiny_backbone_cfg())
    bound = (6 / (3 * 8 * 8 + 32))**0.5
    values = torch.cat([p.flatten() for p in model.prompts])
    assert values.abs().max() <= bound and values.abs().max() > 0.8 * bound


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_prompts=-1), 'prompt counts'),
    (dict(guided_layers=(3, )), 'out of range'),
    (dict(guided_layers=(-4, )), 'out of range'),
    (dict(bias_tuning=('k', 'gate')), 'unknown bias_tuning'),
    (dict(prompt_mode='shallow'), 'guidance needs'),
    (dict(prompt_mode='middle'), 'prompt_mode'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(tiny_backbone_cfg(**kwargs))


def _trainable(model):
    return {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}


def test_trainable_sets():
    D, L = 32, 3
    vpt = build_model(tiny_backbone_cfg())
    assert set(_trainable(vpt)) == {'prompts.0', 'prompts.1', 'prompts.2'}
    assert sum(_trainable(vpt).values()) == (3 + 3 + 2) * D
    plus = build_model(tiny_backbone_cfg(bias_tuning=('k', 'v'), train_cls_token=True))
    names = set(_trainable(plus))
    assert names - {'prompts.0', 'prompts.1', 'prompts.2'} == {'cls_token'} | {
        f'layers.{i}.attn.{n}_bias_delta' for i in range(L) for n in 'kv'}
    assert sum(_trainable(plus).values()) == 8 * D + D + 2 * L * D
    every = build_model(tiny_backbone_cfg(bias_tuning=('q', 'proj', 'fc1', 'fc2', 'norm')))
    names = set(_trainable(every))
    for i in range(L):
        assert {f'layers.{i}.attn.proj.bias', f'layers.{i}.ffn.layers.0.0.bias',
                f'layers.{i}.ffn.layers.1.bias', f'layers.{i}.ln1.bias',
                f'layers.{i}.ln2.bias', f'layers.{i}.attn.q_bias_delta'} <= names
    assert 'ln1.bias' in names and not any(n.endswith('weight') for n in names)
    linear = build_model(tiny_backbone_cfg(num_prompts=0, num_guided_prompts=0))
    assert sum(_trainable(linear).values()) == 0
    # empty prompt sets never get a gradient: DDP would wait for them forever
    assert not any(p.requires_grad for p in linear.parameters())
    shallow = build_model(tiny_backbone_cfg(prompt_mode='shallow', num_guided_prompts=0))
    assert set(_trainable(shallow)) == {'prompts.0'}


def test_only_tuned_tensors_change_and_get_gradients():
    model = _randomise(build_model(tiny_backbone_cfg(bias_tuning=('k', 'v'))))
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2,
                            weight_decay=0.1)
    model.train()
    for _ in range(3):
        (out, ), taps, _ = model.forward_with_taps(torch.randn(2, 3, 32, 32))
        loss = out.pow(2).mean() + taps[2].prompt_query.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        for n, p in model.named_parameters():
            assert (p.grad is not None) == p.requires_grad, n
        opt.step()
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed == {'prompts.0', 'prompts.1', 'prompts.2'} | {
        f'layers.{i}.attn.{n}_bias_delta' for i in range(3) for n in 'kv'}
    # the fused qkv bias: q slice exactly as loaded, k and v moved
    for layer in model.layers:
        eff = model._qkv_bias(layer.attn)
        assert torch.equal(eff[:32], layer.attn.qkv.bias[:32])
        assert not torch.equal(eff[32:], layer.attn.qkv.bias[32:])


def test_frozen_modules_stay_in_eval_mode():
    model = build_model(tiny_backbone_cfg(drop_rate=0.5, drop_path_rate=0.5))
    model.train()
    assert model.training and not model.layers.training and model.prompt_dropout.training
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x)[0], model(x)[0])  # no dropout / drop-path noise


def _reference_attention_taps(model, x_in, layer_idx):
    """Recompute the guided layer's query projection, the heads' concat (MHSA before W_O) and
    the MHSA output after W_O independently of _layer_forward: softmax attention written out
    head by head, the tuned bias offsets added to the qkv bias by hand."""
    layer = model.layers[layer_idx]
    h = layer.ln1(x_in)
    W, b = layer.attn.qkv.weight, layer.attn.qkv.bias
    q, k, v = (F.linear(h, W[i * 32:(i + 1) * 32],
                        b[i * 32:(i + 1) * 32] + getattr(layer.attn, f'{n}_bias_delta', 0.))
               for i, n in enumerate('qkv'))
    heads = []
    for j in range(4):  # 4 heads of 8 channels
        qh, kh, vh = (t[..., j * 8:(j + 1) * 8] for t in (q, k, v))
        heads.append((qh @ kh.transpose(-1, -2) / 8**0.5).softmax(-1) @ vh)
    concat = torch.cat(heads, dim=-1)  # B x L x 32: Concat(H_1..H_4)
    return q, concat, layer.attn.proj(concat)


def test_taps_are_the_query_projections_and_mhsa_output():
    model = _randomise(build_model(tiny_backbone_cfg(out_type='raw', out_indices=(1, ),
                                                     bias_tuning=('q', 'k', 'v'))))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    before = _module_state(model)
    assert len(model(x)) == 1 and _module_state(model) == before  # forward: outs, no taps
    model.train()
    (x1, ), taps, final = model.forward_with_taps(x)  # x1: [CLS, 3 old prompts, patches]
    assert list(taps) == [2] and final.shape == (2, 1 + 2 + 16, 32)
    x_in = torch.cat([x1[:, :1], model.prompts[2].expand(2, -1, -1), x1[:, 4:]], dim=1)
    q, concat, out = _reference_attention_taps(model, x_in, 2)
    t = taps[2]
    assert t.prompt_query.shape == (2, 32)
    assert t.patch_mhsa.shape == t.patch_mhsa_proj.shape == (2, 16, 32)
    torch.testing.assert_close(t.prompt_query, q[0, 1:3], atol=1e-5, rtol=0)
    torch.testing.assert_close(t.cls_query, q[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(t.patch_mhsa, concat[:, 3:], atol=1e-5, rtol=0)
    torch.testing.assert_close(t.patch_mhsa_proj, out[:, 3:], atol=1e-5, rtol=0)
    torch.testing.assert_close(model.layers[2].attn.proj(t.patch_mhsa), t.patch_mhsa_proj,
                               atol=1e-6, rtol=0)
    assert (t.patch_mhsa - t.patch_mhsa_proj).abs().max() > 0.1  # W_O is not the identity
    torch.testing.assert_close(t.prompt_raw, model.prompts[2])
    torch.testing.assert_close(t.block_input, x1[:, 4:])
    # slices of the tensors the layer computes anyway: no copy
    assert t.prompt_query.untyped_storage().data_ptr() == \
        t.cls_query.untyped_storage().data_ptr()  # the fused qkv output
    assert t.patch_mhsa._base is not None and t.patch_mhsa._base.numel() == 2 * (1 + 2 + 16) * 32


def _module_state(model):
    """What a forward pass could leave on the module: its plain attributes, by identity."""
    assert not any(isinstance(v, torch.Tensor) for v in vars(model).values())
    return {k: id(v) for k, v in vars(model).items()}


def test_forward_returns_only_outs_and_forward_with_taps_the_same_outs():
    """``forward`` keeps MMPretrain's contract and leaves nothing on the module, also while
    training; ``forward_with_taps`` gives the same outputs and gradients, plus the taps."""
    model = _randomise(build_model(tiny_backbone_cfg(out_type='raw', out_indices=(1, 2),
                                                     bias_tuning=('k', 'v'))))
    model.train()
    x = torch.randn(2, 3, 32, 32)
    before = _module_state(model)
    outs = model(x)
    assert isinstance(outs, tuple) and len(outs) == 2 and _module_state(model) == before
    tuned = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(sum(o.square().sum() for o in outs), tuned)
    outs_t, taps, final = model.forward_with_taps(x)
    assert _module_state(model) == before
    assert all(torch.equal(a, b) for a, b in zip(outs, outs_t))
    assert torch.equal(final, outs_t[1])  # raw output of the last layer: the final tokens
    grads_t = torch.autograd.grad(sum(o.square().sum() for o in outs_t), tuned)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_t))
    # the taps of the guided layer 2, computed by hand from its input
    x_in = torch.cat([outs[0][:, :1], model.prompts[2].expand(2, -1, -1), outs[0][:, 4:]], 1)
    layer = model.layers[2]
    q = F.linear(layer.ln1(x_in), layer.attn.qkv.weight, model._qkv_bias(layer.attn))[..., :32]
    assert list(taps) == [2]
    torch.testing.assert_close(taps[2].prompt_query, q[0, 1:3], atol=1e-6, rtol=0)
    torch.testing.assert_close(taps[2].cls_query, q[:, 0], atol=1e-6, rtol=0)
    assert torch.equal(taps[2].block_input, outs[0][:, 4:])
    assert torch.equal(taps[2].prompt_raw, model.prompts[2])


class _ShapeRecorder(TorchDispatchMode):

    def __init__(self):
        super().__init__()
        self.shapes = []
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.append(str(func))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


@pytest.mark.parametrize('train', [False, True])
def test_attention_is_fused_and_no_attention_map_is_built(train):
    model = build_model(tiny_backbone_cfg())
    model.train(train)
    x = torch.randn(2, 3, 32, 32, requires_grad=train)
    with _ShapeRecorder() as rec:  # training takes the taps, as DA-VPT does
        out = (model.forward_with_taps(x)[0] if train else model(x))[0]
        if train:
            out.sum().backward()
    L1, L2 = 1 + 3 + 16, 1 + 2 + 16
    assert not any(len(s) >= 2 and s[-2:] in ((L1, L1), (L2, L2)) for s in rec.shapes)
    assert sum('scaled_dot_product' in op and 'backward' not in op for op in rec.ops) == 3


def test_theorem1_attention_gain_of_a_prompt_step():
    """Paper Theorem 1: da_i ~= a_i (1 - a_i) ds_i, ds_i = dp . v_i / sqrt(d), for a small step."""
    g = torch.Generator().manual_seed(0)
    d = 16
    keys = torch.linalg.qr(torch.randn(d, d, generator=g))[0][:10] * 3  # orthogonal keys
    p = torch.randn(d, generator=g)
    i = 4
    step = 1e-3 * keys[i] / keys[i].norm()  # move the query towards key i only
    a = (keys @ p / d**0.5).softmax(0)
    a_new = (keys @ (p + step) / d**0.5).softmax(0)
    ds = keys @ step / d**0.5
    assert ds[i] > 0 and ds.abs().sum() - ds[i].abs() < 1e-6
    predicted = a[i] * (1 - a[i]) * ds[i]
    assert (a_new[i] - a[i]).item() == pytest.approx(predicted.item(), rel=1e-2)
    assert a_new[i] > a[i]
    # a general step: the own-score term plus the first-order cross terms
    step = 1e-3 * torch.randn(d, generator=g)
    ds = keys @ step / d**0.5
    a_new = (keys @ (p + step) / d**0.5).softmax(0)
    torch.testing.assert_close(a_new - a, a * (1 - a) * ds - a * ((a * ds).sum() - a * ds),
                               atol=1e-7, rtol=1e-2)


def test_without_prompts_is_the_plain_vit():
    model = _randomise(build_model(tiny_backbone_cfg(out_type='featmap', out_indices=(2, ))))
    plain = _plain(out_type='featmap', out_indices=(2, ))
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith('prompts.')}, strict=False)
    model.eval()
    plain.eval()
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(model(x)[0], plain(x)[0])
    outs, taps, final = model.forward_with_taps(x, prompts=False)
    torch.testing.assert_close(outs[0], plain(x)[0])
    assert model.final_num_prefix(prompts=False) == 1 and final.shape[1] == 1 + 16
    assert taps[2].prompt_query.shape == (0, 32)
    assert model.final_num_prefix() == 3 and model.forward_with_taps(x)[2].shape[1] == 3 + 16


def _insert_by_cat(self, x, layer_idx, num_prefix):
    """The plain VPT insertion: always rebuild the sequence with ``torch.cat``."""
    if self.prompt_mode == 'shallow' and layer_idx > 0:
        return x, num_prefix
    prompts = self.prompts[layer_idx]
    if prompts.shape[0] == 0 and num_prefix == 1:
        return x, num_prefix
    prompts = self.prompt_dropout(prompts).to(x.dtype).expand(x.shape[0], -1, -1)
    return torch.cat([x[:, :1], prompts, x[:, num_prefix:]], dim=1), 1 + prompts.shape[1]


@pytest.mark.parametrize('kwargs', [
    dict(), dict(num_prompts=3, num_guided_prompts=3), dict(num_guided_prompts=5),
    dict(out_indices=(0, 1, 2), out_type='raw'), dict(prompt_dropout=0.3),
    dict(bias_tuning=('k', 'v'), train_cls_token=True), dict(with_cp=True),
    dict(prompt_mode='shallow', num_guided_prompts=0), dict(num_prompts=0, num_guided_prompts=2)])
def test_in_place_prompt_insertion_equals_concatenation(kwargs, monkeypatch):
    """Prompts written into their slots in place give the outputs and gradients of torch.cat."""
    results = []
    for insert in (DAVPTViT._insert_prompts, _insert_by_cat):
        monkeypatch.setattr(DAVPTViT, '_insert_prompts', insert)
        torch.manual_seed(0)
        model = _randomise(build_model(tiny_backbone_cfg(**kwargs)))
        model.train()
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        torch.manual_seed(2)  # same prompt dropout masks
        outs, taps, final = model.forward_with_taps(x)
        loss = sum(o.square().sum() for o in outs)
        if model.guided_layers:  # the taps of the guided layer take part in the loss too
            loss = loss + final.square().sum() + sum(
                getattr(t, f).square().sum() for t in taps.values()
                for f in ('prompt_query', 'cls_query', 'patch_mhsa',
                          'patch_mhsa_proj', 'block_input'))
        loss.backward()
        model.eval()
        with torch.no_grad():
            evals = model(x)
        results.append([o.detach() for o in outs] + list(evals) +
                       [p.grad for p in model.parameters() if p.grad is not None])
    assert len(results[0]) == len(results[1])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_deep_prompts_are_written_in_place():
    """With as many prompts in every layer, only the first layer rebuilds the sequence."""
    model = build_model(tiny_backbone_cfg(num_prompts=3, num_guided_prompts=3))
    model.train()
    with _ShapeRecorder() as rec:
        model(torch.randn(2, 3, 32, 32))[0].sum().backward()
    assert sum(op.startswith('aten.cat') for op in rec.ops) == 2  # CLS + patches, layer 0
    model = build_model(tiny_backbone_cfg(num_prompts=3, num_guided_prompts=2))
    with _ShapeRecorder() as rec:
        model(torch.randn(2, 3, 32, 32))
    assert sum(op.startswith('aten.cat') for op in rec.ops) == 3  # + the guided layer's M != P
