import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import mmdavpt  # noqa: F401
from mmdavpt.models import DAVPTViT
from mmdavpt_lab import attention

from conftest import TINY_CLASSES, load_tool, tiny_backbone_cfg, write_tiny_config

va = load_tool('tools/analysis/visualize_attention.py')


def _backbone(**kwargs) -> DAVPTViT:
    torch.manual_seed(0)
    backbone = MODELS.build(tiny_backbone_cfg(**kwargs)).eval()
    for name, p in backbone.named_parameters():
        if name.endswith('_bias_delta'):  # tuned bias offsets must enter the recomputed q/k
            p.data.normal_(std=0.5)
    return backbone


@pytest.mark.parametrize('kwargs', [dict(bias_tuning=('q', 'k', 'v')),
                                    dict(prompt_mode='shallow', num_guided_prompts=0)])
def test_recomputed_attention_is_the_layers_softmax_qk(kwargs):
    backbone = _backbone(**kwargs)
    recorder = attention.AttentionRecorder(backbone, [0, -1])
    captured = {}

    def keep(name):
        def hook(module, args, output):
            captured[name] = (args[0], output)
        return hook

    for i in (0, 2):
        backbone.layers[i].ln1.register_forward_hook(keep(f'ln1.{i}'))
        backbone.layers[i].attn.proj.register_forward_hook(keep(f'proj.{i}'))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), recorder.recording():
        backbone(x)
    assert recorder.layers == [0, 2] and recorder.patch_hw == (4, 4)
    for i in (0, 2):
        tokens = captured[f'ln1.{i}'][1]  # B x L x D
        attn = backbone.layers[i].attn
        D, heads = backbone.embed_dims, attn.num_heads
        bias = attn.qkv.bias.detach().clone()
        for j, n in enumerate('qkv'):
            delta = getattr(attn, f'{n}_bias_delta', None)
            if delta is not None:
                bias[j * D:(j + 1) * D] += delta.detach()
        w = attn.qkv.weight.detach()
        q, k, v = (tokens @ w[j * D:(j + 1) * D].T + bias[j * D:(j + 1) * D] for j in range(3))

        q, k, v = (t.reshape(2, -1, heads, D // heads).transpose(1, 2) for t in (q, k, v))
        reference = torch.softmax(q @ k.transpose(-1, -2) / (D // heads)**0.5, dim=-1)
        P = recorder.num_prefix(i)
        assert P == 1 + (3 if i == 0 or kwargs.get('prompt_mode') == 'shallow' else 2)
        assert tokens.shape[1] == P + 16
        torch.testing.assert_close(recorder.maps[i], reference[:, :, :P].mean(1))
        # and it is the attention the layer used: its rows times V are the fused SDPA output
        rows = attention.attention_rows(backbone, i, tokens, P)
        sdpa = captured[f'proj.{i}'][0].reshape(2, -1, heads, D // heads).transpose(1, 2)
        torch.testing.assert_close(rows @ v, sdpa[:, :, :P], atol=1e-5, rtol=1e-4)


def test_cls_shares_split_the_cls_row():
    # B=2 images, P=3 query rows (CLS, 2 prompts), L=4 keys (CLS, 2 prompts, 1 patch)
    cls_rows = torch.tensor([[0.1, 0.3, 0.2, 0.4], [0.5, 0.1, 0.1, 0.3]])
    rows = torch.stack([cls_rows, cls_rows.flip(-1), cls_rows], dim=1)
    positive = torch.tensor([[False, True], [False, False]])
    s = attention.cls_shares(rows, positive)
    torch.testing.assert_close(s['positive'][:1], torch.tensor([0.2]))
    assert torch.isnan(s['positive'][1]) and torch.isnan(s['positive_is_top'][1])
    torch.testing.assert_close(s['others'], torch.tensor([0.3, 0.2]))
    torch.testing.assert_close(s['patches'], torch.tensor([0.4, 0.3]))
    assert s['positive_is_top'][0] == 0.  # prompt 0 (0.3) beats the positive prompt 1 (0.2)
    none = attention.cls_shares(rows, None)
    torch.testing.assert_close(none['others'], torch.tensor([0.5, 0.2]))


def _checkpoints(tmp_path):
    """A DA-VPT and a VPT checkpoint of the tiny config, as the runner writes them."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    paths = []
    for name, guidance in (('davpt', True), ('vpt', False)):
        config = write_tiny_config(tmp_path, name=f'tiny_{name}.py', guidance=guidance,
                                   **({} if guidance else dict(num_guided_prompts=0)))
        cfg = Config.fromfile(config)
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        if guidance:
            mapping = model.guidance.mapping
            feats = torch.randn(len(TINY_CLASSES), 32)
            mapping.accumulate(feats, torch.arange(len(TINY_CLASSES)))
            mapping.remap()
        path = str(tmp_path / f'{name}.pth')
        torch.save(dict(state_dict=model.state_dict(),
                        meta=dict(cfg=cfg.pretty_text, dataset_meta=dict(classes=TINY_CLASSES))),
                   path)
        paths.append((config, path))
    return paths


def test_tool_writes_one_png_per_image_and_the_split_shares(tmp_path, capsys):
    (config, davpt), (_, vpt) = _checkpoints(tmp_path)
    images = [str(tmp_path / 'data' / 'tiny_task' / 'images' / 'test' / f'{c}_0.png')
              for c in (1, 3)]
    out = tmp_path / 'out'
    means = va.main([config, davpt, vpt, *images, '--layers', '0', '-1', '--out', str(out),
                     '--split', 'val', '--labels', 'bee', '3', '--max-prompts', '2'])
    printed = capsys.readouterr().out
    pngs = sorted(p.name for p in out.glob('*.png'))
    assert pngs == ['1_0.png', '3_0.png', 'attention_shares.png']
    names = list(means)
    assert names == ['DA-VPT: davpt.pth', 'VPT: vpt.pth']  # the VPT one built from its meta cfg
    for name in names:
        assert name in printed
        for m in means[name].values():
            assert m['images'] == 10  # the val200 split of the tiny task
            parts = [m[k] for k in ('cls', 'positive', 'others', 'patches') if m[k] is not None]
            assert all(0 <= p <= 1 for p in parts) and sum(parts) == pytest.approx(1, abs=1e-5)
    davpt_means, vpt_means = means[names[0]], means[names[1]]
    assert davpt_means[2]['positive'] is not None and davpt_means[2]['num_prompts'] == 2
    assert 0 <= davpt_means[2]['positive_is_top'] <= 1
    assert davpt_means[0]['positive'] is None  # layer 0 is not guided: no positive prompt
    assert all(m['positive'] is None for m in vpt_means.values())  # VPT has no mapping
    saved = json.loads((out / 'attention_shares.json').read_text())
    assert saved[names[0]]['2']['positive'] == pytest.approx(davpt_means[2]['positive'])
    assert osp.getsize(out / '1_0.png') > 10_000


def test_tool_without_labels_marks_the_predicted_class(tmp_path):
    (config, davpt), _ = _checkpoints(tmp_path)
    image = str(tmp_path / 'data' / 'tiny_task' / 'images' / 'val200' / '0_0.png')
    means = va.main([config, davpt, image, '--out', str(tmp_path / 'out')])
    assert means == {} and (tmp_path / 'out' / '0_0.png').is_file()
