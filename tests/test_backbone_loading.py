"""Pre-trained weights into DAVPTViT: exactness against MMSeg's ViT, strict key checks."""
import pytest
import torch
from mmengine.runner import save_checkpoint
from mmpretrain.models import VisionTransformer
from mmseg.models.backbones import VisionTransformer as SegViT

from mmdavpt.models import DAVPTViT

from conftest import TINY_ARCH


def _random(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    model.eval()
    return model


def _ours(**kwargs):
    kwargs = {**dict(arch=TINY_ARCH, img_size=32, patch_size=8, num_prompts=0,
                     num_guided_prompts=0), **kwargs}
    return DAVPTViT(**kwargs)


@pytest.mark.parametrize('final_norm', [False, True])
def test_no_prompts_equals_mmseg_vit_featmaps(tmp_path, final_norm):
    seg = _random(SegViT(img_size=32, patch_size=8, embed_dims=32, num_layers=3, num_heads=4,
                         mlp_ratio=2, out_indices=(0, 1, 2), final_norm=final_norm,
                         norm_cfg=dict(type='LN', eps=1e-6), interpolate_mode='bilinear'))
    save_checkpoint({'state_dict': seg.state_dict()}, str(tmp_path / 'seg.pth'))
    ours = _ours(out_type='featmap', out_indices=(0, 1, 2), final_norm=final_norm,
                 interpolate_mode='bilinear',
                 init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'seg.pth')))
    ours.init_weights()
    ours.eval()
    for size in [(32, 32), (48, 40)]:  # the second resizes the position embedding
        x = torch.randn(2, 3, *size)
        for a, b in zip(seg(x), ours(x)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_mmpretrain_classifier_checkpoint_with_head_loads(tmp_path):
    ref = _random(VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=8))
    state = {f'backbone.{k}': v for k, v in ref.state_dict().items()}
    state['head.layers.head.weight'] = torch.zeros(10, 32)
    ours = _ours(num_prompts=2, num_guided_prompts=2)
    ours.load_pretrained({'state_dict': state})
    ours.eval()
    ours_plain = _ours()
    ours_plain.load_pretrained({'state_dict': state})
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(ref(x)[0], ours_plain.eval()(x)[0], atol=1e-5, rtol=0)


def test_missing_keys_fail_loudly():
    state = _random(VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=8)).state_dict()
    del state['layers.1.attn.qkv.weight']
    with pytest.raises(KeyError, match=r'missing backbone keys \[.layers.1.attn.qkv.weight.\]'):
        _ours().load_pretrained(state)
    deeper = _random(VisionTransformer(arch={**TINY_ARCH, 'num_layers': 4}, img_size=32,
                                       patch_size=8)).state_dict()
    with pytest.raises(KeyError, match='unexpected keys'):
        _ours().load_pretrained(deeper)


def test_wrong_width_or_patch_size_fail_loudly():
    wide = _random(VisionTransformer(arch={**TINY_ARCH, 'embed_dims': 64}, img_size=32,
                                     patch_size=8)).state_dict()
    with pytest.raises(ValueError, match='32 wide'):
        _ours().load_pretrained(wide)
    patch16 = _random(VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=16)).state_dict()
    with pytest.raises(ValueError, match=r'patch size \(16, 16\)'):
        _ours().load_pretrained(patch16)


def test_pretrained_init_cfg_resizes_position_embedding(tmp_path):
    ref = _random(VisionTransformer(arch=TINY_ARCH, img_size=64, patch_size=8))  # 8x8 grid
    save_checkpoint({'state_dict': ref.state_dict()}, str(tmp_path / 'vit.pth'))
    ours = _ours(init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'vit.pth')))
    ours.init_weights()
    assert ours.pos_embed.shape == (1, 1 + 16, 32)
    torch.testing.assert_close(ours.layers[2].attn.qkv.weight, ref.layers[2].attn.qkv.weight)


def test_final_norm_false_loads_a_checkpoint_with_its_final_norm(tmp_path):
    """SETR configs take un-normalised features (final_norm=False) from weights that have ln1:
    the unused ln1 is dropped, every other key still loads strictly."""
    state = _random(VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=8)).state_dict()
    assert 'ln1.weight' in state
    ref = VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=8, out_type='featmap',
                            final_norm=False)
    ref.load_state_dict({k: v for k, v in state.items() if not k.startswith('ln1.')})
    ours = _ours(out_type='featmap', final_norm=False)
    ours.load_pretrained(state)
    ref.eval()
    ours.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ref(x)[0], ours(x)[0], atol=1e-5, rtol=0)
    del state['layers.2.ffn.layers.1.weight']
    with pytest.raises(KeyError, match='missing backbone keys'):
        _ours(out_type='featmap', final_norm=False).load_pretrained(state)
