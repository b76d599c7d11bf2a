"""Translation of official DA-VPT configs (tests/fixtures/official_davpt: three real ones)."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import yaml
from mmengine.config import Config

from mmdavpt.models.losses import ClsPromptLoss, PatchPromptLoss
from mmdavpt.utils.params import build_model_on_meta
from mmdavpt_lab.official_config import (
    OFFICIAL_ARGS,
    format_config,
    official_args,
    read_official_config,
    translate_official_config,
)

from conftest import load_tool

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / 'tests/fixtures/official_davpt'
convert = load_tool('tools/convert_official_config.py')


def translate(name, **kwargs):
    return translate_official_config((DATA / name).read_text(), **kwargs)


def test_reader_follows_the_official_loader():
    # the official files are not YAML mappings ('key:value' without a space): a YAML parser
    # reads the whole file as one string, hence the official loader's rules here
    assert isinstance(yaml.safe_load((DATA / 'vitb_cub200.yaml').read_text()), str)
    entries = read_official_config('# comment\n\nno colon here\n--lr: 0.5\nbias-k:true\n'
                                   'dataset:"cub"\n')
    assert [(k, v) for _, k, v in entries] == [('lr', ' 0.5'), ('bias_k', 'true'),
                                               ('dataset', '"cub"')]
    args, ignored = official_args('lr: 0.5\nbias_k:yes\nepochs:0.5\nfoo:1\ndataset:"dtd"\n')
    assert args['lr'] == 0.5 and args['bias_k'] is True and args['dataset'] == 'dtd'
    assert args['epochs'] == OFFICIAL_ARGS['epochs']  # '0.5' is not an int: default kept
    assert len(ignored) == 2 and 'epochs' in ignored[0] and 'foo' in ignored[1]
    # a mapping is read the same way
    args, ignored = official_args({'lr': 0.5, 'bias_k': True, 'nope': 3})
    assert args['lr'] == 0.5 and args['bias_k'] is True and ignored[0].startswith('nope')


def test_vitb_cub200():
    cfg, report = translate('vitb_cub200.yaml')
    # early_stop_thr has the int default -1 in params.py: '0.88' is silently dropped
    assert len(report.ignored) == 1 and 'early_stop_thr:0.88 (does not parse as int' in \
        report.ignored[0]
    assert cfg['_base_'] == ['configs/classification/_base_/vit-b16-in21k_davpt-plus.py',
                             'configs/_base_/datasets/fgvc/cub.py']
    assert cfg['model']['backbone'] == dict(
        num_prompts=10, guided_layers=(10, 11), num_guided_prompts=10, prompt_dropout=0.0,
        bias_tuning=('k', 'v', 'proj', 'fc2', 'norm'), train_cls_token=True)
    assert cfg['model']['head'] == dict(num_classes=200)
    loss_xp, loss_pcls = cfg['model']['guidance']['loss_xp'], cfg['model']['guidance']['loss_pcls']
    assert loss_xp == dict(type='PatchPromptLoss', loss_weight=0.05, prompt_side='raw',
                           sample_side='block_input_mean', temperature=1 / 160,
                           margin=pytest.approx(0.02), positive_norm='all')
    assert loss_pcls == dict(type='ClsPromptLoss', loss_weight=0.05, prompt_side='raw',
                             temperature=1 / 160, margin=pytest.approx(0.02),
                             positive_norm='all')
    assert cfg['train_dataloader']['sampler'] == dict(
        _delete_=True, type='ClassBalancedSampler', batch_size=32, samples_per_class=2)
    optim = cfg['optim_wrapper']
    assert optim['optimizer'] == dict(type='AdamW', lr=0.0005, weight_decay=0.05)
    assert optim['clip_grad'] == dict(type='value', clip_value=10.)
    assert optim['paramwise_cfg']['custom_keys'] == {
        'head.fc.weight': dict(decay_mult=pytest.approx(100.))}
    warmup, cosine = cfg['param_scheduler']
    assert warmup['start_factor'] == pytest.approx(1e-8 / 5e-4) and warmup['end'] == 10
    assert cosine['eta_min'] == 1e-9 and cosine['end'] == 100 and cosine['convert_to_iter_based']
    assert cfg['custom_hooks'] == [dict(type='SemanticMappingHook', interval=1,
                                        images_per_class=10)]
    text = '\n'.join(report.not_reproduced)
    for what in ('vpt_norm', 'init_divide_by8', 'mask', 'drop_path', 'fp16', 'protocol'):
        assert what in text
    assert any(n.startswith('patch_type') for n in report.no_effect)


def test_vitb_dtd_losses_are_off_under_an_ignored_key():
    cfg, report = translate('vitb_dtd.yaml')
    ignored = {entry.split(':')[1].strip() for entry in report.ignored}
    assert {'vpt_and_cls_loss_weight', 'num_last_prompts', 'prompt_depth',
            'query_vpt_emb'} <= ignored
    guidance = cfg['model']['guidance']
    assert guidance['loss_xp'] is None and guidance['loss_pcls'] is None
    assert any('vpt_loss_weight = 0.0' in t and 'OFF' in t for t in report.translated)
    assert cfg['model']['backbone']['guided_layers'] == (11, )
    assert cfg['model']['head'] == dict(num_classes=47)
    assert cfg['_base_'][1] == 'configs/_base_/datasets/vtab1k/dtd.py'
    assert cfg['custom_hooks'][0]['interval'] == 1


def test_moco_flowers_general_formula():
    cfg, _ = translate('moco_flowers.yaml')
    assert cfg['_base_'] == ['configs/classification/_base_/vit-b16-mocov3_davpt-plus.py',
                             'configs/_base_/datasets/fgvc/oxford_flowers.py']
    loss_xp = cfg['model']['guidance']['loss_xp']
    assert loss_xp['temperature'] == pytest.approx(1 / 320)  # alpha 32 x scale 10
    assert loss_xp['margin'] == pytest.approx(0.01)  # delta 0.1 / scale 10
    assert cfg['model']['backbone']['guided_layers'] == tuple(range(3, 12))
    assert cfg['model']['backbone']['num_prompts'] == 5
    # weight_decay 1, wd_head 0.05
    assert cfg['optim_wrapper']['optimizer']['weight_decay'] == 1
    assert cfg['optim_wrapper']['paramwise_cfg']['custom_keys'] == {
        'head.fc.weight': dict(decay_mult=pytest.approx(0.05))}


def _official_loss(samples, prompts, labels, alpha, pos_delta, neg_delta, scale):
    """models/criterion.py of the official code: ml_patch_forward / ml_cls_forward with
    masked_logsumexp over dim 0 (proxy anchor), written out."""
    num_prompts = prompts.shape[0]
    sims = F.normalize(samples, dim=-1) @ (F.normalize(prompts, dim=-1) * scale).T
    same = labels[:, None] == torch.arange(num_prompts)[None]

    def masked_logsumexp(s, mask):
        s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
        s = torch.cat([s, torch.zeros(1, num_prompts, dtype=s.dtype)], dim=0)
        out = torch.logsumexp(s, dim=0, keepdim=True)
        return out.masked_fill(~mask.any(dim=0, keepdim=True), 0)

    pos = masked_logsumexp(-alpha * (sims - pos_delta), same)
    neg = masked_logsumexp(alpha * (sims - neg_delta), ~same)
    return pos.mean() + neg.mean()


@pytest.mark.parametrize('name,scale', [('vitb_cub200.yaml', 5.), ('moco_flowers.yaml', 10.)])
def test_translated_losses_equal_the_official_losses(name, scale):
    cfg, _ = translate(name)
    guidance = cfg['model']['guidance']
    xp_cfg = {k: v for k, v in guidance['loss_xp'].items() if k != 'type'}
    pcls_cfg = {k: v for k, v in guidance['loss_pcls'].items() if k != 'type'}
    loss_xp, loss_pcls = PatchPromptLoss(**xp_cfg), ClsPromptLoss(**pcls_cfg)
    g = torch.Generator().manual_seed(0)
    B, N, M, D = 6, 5, 4, 16
    labels = torch.tensor([0, 0, 1, 2, 2, 2])  # prompt 3 has no positive in this batch
    prompts = torch.randn(M, D, generator=g) * 0.02
    block_input = torch.randn(B, N, D, generator=g)  # cosines near 0: no term saturates
    taps = SimpleNamespace(prompt_raw=prompts, prompt_query=torch.randn(M, D, generator=g),
                           cls_query=torch.randn(B, D, generator=g),
                           block_input=block_input, patch_mhsa=torch.randn(B, N, D, generator=g))
    patch_prompt = labels[:, None].expand(B, N)
    present = F.one_hot(labels, M).bool()
    for ours, samples, weight in ((loss_xp(taps, patch_prompt), block_input.mean(1),
                                   xp_cfg['loss_weight']),
                                  (loss_pcls(taps, present), taps.cls_query,
                                   pcls_cfg['loss_weight'])):
        want = weight * _official_loss(samples.double(), prompts.double(), labels, 32., 0.1, -0.1,
                                       scale)
        assert ours.item() == pytest.approx(want.item(), rel=1e-5)
    # the paper's normalisation differs here (one of four prompts has no positive)
    paper = PatchPromptLoss(**{**xp_cfg, 'positive_norm': 'present'})(taps, patch_prompt)
    assert paper.item() != pytest.approx(loss_xp(taps, patch_prompt).item(), rel=1e-3)


def test_cli_writes_a_loadable_config_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / 'sub' / 'cub.py'
    assert convert.main([str(DATA / 'vitb_cub200.yaml'), '-o', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'IGNORED by the official loader' in printed and 'early_stop_thr' in printed
    cfg = Config.fromfile(str(out), import_custom_modules=False)
    assert cfg.model.guidance.loss_xp.sample_side == 'block_input_mean'
    assert cfg.model.guidance.loss_xp.temperature == pytest.approx(1 / 160)
    assert tuple(cfg.model.backbone.guided_layers) == (10, 11)
    assert cfg.train_dataloader.sampler == dict(type='ClassBalancedSampler', batch_size=32,
                                                samples_per_class=2)  # base's shuffle deleted
    assert cfg.train_dataloader.dataset.dataset_name == 'cub'
    assert cfg.optim_wrapper.clip_grad == dict(type='value', clip_value=10.)
    assert [h.type for h in cfg.custom_hooks] == ['SemanticMappingHook']
    model = build_model_on_meta(cfg.model, scope=cfg.default_scope)
    assert model.guidance.loss_xp.positive_norm == 'all'
    assert model.backbone.guided_layers == [10, 11]

    before = out.read_text()
    with pytest.raises(SystemExit):
        convert.main([str(DATA / 'vitb_dtd.yaml'), '-o', str(out)])
    assert 'exists; pass --force' in capsys.readouterr().err
    assert out.read_text() == before
    assert convert.main([str(DATA / 'vitb_dtd.yaml'), '-o', str(out), '--force']) == 0
    assert out.read_text() != before


def test_cli_never_overwrites_its_input_even_with_force(tmp_path, capsys):
    """An official config saved under a ``.py`` name (or a link to it) given as its own output:
    ``--force`` allows replacing an old output, never the input."""
    official = tmp_path / 'vitb_dtd.py'
    official.write_text((DATA / 'vitb_dtd.yaml').read_text())
    link = tmp_path / 'link.py'
    link.symlink_to(official)
    before = official.read_text()
    for out in (official, link):
        with pytest.raises(SystemExit):
            convert.main([str(official), '-o', str(out), '--force'])
        assert f'the output {out} is the input {official}' in capsys.readouterr().err
    assert official.read_text() == before and link.is_symlink()


def test_cli_prints_with_bases_relative_to_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert convert.main([str(DATA / 'moco_flowers.yaml')]) == 0
    text = capsys.readouterr().out
    (tmp_path / 'flowers.py').write_text(text)
    cfg = Config.fromfile(str(tmp_path / 'flowers.py'), import_custom_modules=False)
    assert cfg.model.head.num_classes == 102
    assert text.startswith('# Translated from the official DA-VPT config moco_flowers.yaml')


def test_refusals_name_the_key():
    base = (DATA / 'vitb_cub200.yaml').read_text()
    for extra, match in (('criterion:"proxynca"', 'criterion'),
                         ('vpt_type_for_cls_ml:"key"', 'vpt_type_for_cls_ml'),
                         ('cls_type:"cls"', 'cls_type'),
                         ('loss_oproxy_neg_delta:-0.2', 'neg_delta'),
                         ('model_name:"clip-B"', 'model_name'),
                         ('dataset:"tv_food"', 'num_classes')):
        with pytest.raises(ValueError, match=match):
            translate_official_config(base + '\n' + extra)
    with pytest.raises(ValueError, match=r"vpt_type_for_cls_ml='key': not translated \(only.*"
                                         r"mmdavpt has no key prompt side .*"
                                         r"docs/reports/evidence\.md"):
        translate_official_config(base + '\nvpt_type_for_cls_ml:"key"')
    with pytest.raises(ValueError, match=r"vpt_type_for_patch_ml='key': not translated \(only"):
        translate_official_config(base + '\nvpt_type_for_patch_ml:"key"')
    cfg, _ = translate_official_config(base + '\ndataset:"tv_food"', num_classes=101)
    assert cfg['model']['head'] == dict(num_classes=101) and len(cfg['_base_']) == 1


def test_prompt_dropout_is_translated_and_its_raw_side_difference_reported():
    cfg, report = translate_official_config((DATA / 'vitb_cub200.yaml').read_text()
                                            + '\nprompt_drop_rate:0.1')
    assert cfg['model']['backbone']['prompt_dropout'] == 0.1
    assert any(n.startswith('prompt_drop_rate = 0.1') for n in report.not_reproduced)


def test_scale_zero_switches_the_losses_off():
    cfg, report = translate_official_config((DATA / 'vitb_cub200.yaml').read_text()
                                            + '\nloss_vpt_scale_ratio:0')
    assert cfg['model']['guidance']['loss_xp'] is None
    assert any('no gradient' in n for n in report.not_reproduced)


def test_format_config_header_and_bases(tmp_path):
    cfg, report = translate('vitb_cub200.yaml')
    text = format_config(cfg, report, config_dir=ROOT / 'configs/official', repo_root=ROOT,
                         source='x.yaml')
    assert "'../classification/_base_/vit-b16-in21k_davpt-plus.py'" in text
    assert '# IGNORED by the official loader (the official run used the default): 1' in text
