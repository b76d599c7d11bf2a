"""The segmentation configs: they parse, their models build (on the meta device: no weights, no
compute), they match upstream SETR-PUP where they should, the paper's Table 2 parameter counts,
multi-scale testing, and the 24 GB memory budget of ViT-L at 512 x 512, batch 2."""
import copy
import glob
import os.path as osp
from functools import cache

import mmseg
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, MODELS, TRANSFORMS

import mmdavpt  # noqa: F401
import mmdavpt.datasets  # noqa: F401
from mmdavpt.utils.compose import strict_pipeline
from mmdavpt.utils.params import count_tunable

from conftest import load_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_DIR = osp.join(ROOT, 'configs', 'segmentation')
CONFIGS = sorted(glob.glob(osp.join(SEG_DIR, '*.py')) + glob.glob(osp.join(SEG_DIR, 'demo', '*.py'))
                 + [osp.join(ROOT, 'configs', 'setr_pup_davpt_ade20k.py')])
COMPOSING = osp.join(ROOT, 'configs', 'composing',
                     'setr_vit-l_pup_davpt_8xb2-160k_ade20k-512x512.py')
SETR_CONFIGS = [c for c in CONFIGS if '_vit-l_' in osp.basename(c)]
METHODS = ('linear', 'bias', 'vpt', 'davpt', 'davpt-plus', 'full')
DATASET_SUFFIXES = ('8xb2-160k_ade20k-512x512', '8xb2-80k_pascal-context-59-480x480',
                    '8xb2-80k_pascal-context-60-480x480')
UPSTREAM_SETR = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', 'setr',
                         'setr_vit-l_pup_8xb2-160k_ade20k-512x512.py')
# Tunable parameters (millions) of the paper's Table 2 (SETR-PUP, ViT-L, ADE20K).
PAPER_PARAMS = {'linear': 13.1, 'bias': 13.2, 'vpt': 13.6, 'davpt': 13.6, 'davpt-plus': 13.7,
                'full': 317.3}


@cache
def load(path: str) -> Config:
    return Config.fromfile(path)


def build_meta(cfg: Config) -> torch.nn.Module:
    """The config's model on the meta device, without its pre-trained weights."""
    init_default_scope('mmseg')
    model_cfg = cfg.model.copy()
    model_cfg.backbone = dict(model_cfg.backbone, init_cfg=None)
    with torch.device('meta'):
        return MODELS.build(model_cfg)


def unscoped(value):
    """A config value without the ``_scope_`` keys that ``mmseg::`` inheritance adds."""
    if isinstance(value, dict):
        return {k: unscoped(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [unscoped(v) for v in value]
    return value


def setr(method: str, suffix: str) -> str:
    return osp.join(SEG_DIR, f'setr_pup_{method}_vit-l_{suffix}.py')


def test_the_comparison_is_complete():
    expected = {setr(m, s) for m in METHODS for s in DATASET_SUFFIXES}
    assert expected == set(SETR_CONFIGS) - {osp.join(ROOT, 'configs', 'setr_pup_davpt_ade20k.py')}
    card = load(osp.join(ROOT, 'configs', 'setr_pup_davpt_ade20k.py'))
    assert card.model == load(setr('davpt', DATASET_SUFFIXES[0])).model


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_builds_and_matches_its_dataset(path):
    cfg = load(path)
    assert cfg.default_scope == 'mmseg'
    model = build_meta(cfg)
    dataset_cls = DATASETS.get(cfg.train_dataloader.dataset.type)
    num_classes = len(dataset_cls.METAINFO['classes'])
    heads = [model.decode_head, *getattr(model, 'auxiliary_head', [])]
    assert [h.num_classes for h in heads] == [num_classes] * len(heads)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[key].dataset.type == cfg.train_dataloader.dataset.type
    assert cfg.test_evaluator.iou_metrics == ['mIoU']

    guided = cfg.model.get('guidance') is not None
    hooks = [h.type for h in cfg.get('custom_hooks', [])]
    assert hooks == (['SemanticMappingHook'] if guided else [])
    if guided:
        assert model.backbone.guided_layers == [model.backbone.num_layers - 1]  # the last layer
        assert cfg.train_cfg.type == 'IterBasedTrainLoop'
        assert 1 <= cfg.custom_hooks[0].interval < cfg.train_cfg.max_iters


@pytest.mark.parametrize('suffix', DATASET_SUFFIXES)
def test_table2_methods_tune_what_they_say(suffix):
    models = {m: build_meta(load(setr(m, suffix))) for m in METHODS}
    # (empty prompt tensors of layers without prompts are left out)
    trainable = {m: {n for n, p in model.named_parameters() if p.requires_grad and p.numel()}
                 for m, model in models.items()}
    heads = {n for n in trainable['linear'] if 'head' in n}
    assert trainable['linear'] == heads
    backbone = {m: {n[len('backbone.'):] for n in names - heads} for m, names in trainable.items()}
    assert backbone['bias'] == {f'layers.{i}.attn.{n}' for i in range(24)
                                for n in ('q_bias_delta', 'k_bias_delta', 'v_bias_delta',
                                          'proj.bias')}
    assert backbone['vpt'] == {f'prompts.{i}' for i in range(24)}
    assert backbone['davpt'] == backbone['vpt']
    assert [p.shape[0] for p in models['vpt'].backbone.prompts] == [20] * 24
    assert [p.shape[0] for p in models['davpt'].backbone.prompts] == [20] * 23 + [10]
    assert backbone['davpt-plus'] == backbone['davpt'] | {'cls_token'} | {
        f'layers.{i}.attn.{n}_bias_delta' for i in range(24) for n in 'kv'}
    full = models['full']
    assert all(p.requires_grad for p in full.parameters())
    if suffix.endswith('ade20k-512x512'):
        counts = {m: round(count_tunable(model) / 1e6, 1) for m, model in models.items()}
        assert counts == PAPER_PARAMS


def test_full_finetuning_reads_the_same_weights_and_features():
    """MMPretrain's ViT loads the checkpoint non-strictly: its keys must be exactly those that
    DAVPTViT requires (a mismatch would train from a random backbone without an error)."""
    davpt, full = (build_meta(load(setr(m, DATASET_SUFFIXES[0]))) for m in ('davpt', 'full'))
    prompt_keys = {k for k in davpt.backbone.state_dict() if k.startswith('prompts.')}
    assert set(full.backbone.state_dict()) == set(davpt.backbone.state_dict()) - prompt_keys
    for model in (davpt, full):
        assert list(model.backbone.out_indices) == [9, 14, 19, 23]
        assert not model.backbone.final_norm
    assert load(setr('full', DATASET_SUFFIXES[0])).model.backbone.init_cfg.checkpoint == \
        load(setr('davpt', DATASET_SUFFIXES[0])).model.backbone.init_cfg.checkpoint


def test_setr_heads_and_schedule_are_upstreams():
    upstream = load(UPSTREAM_SETR)
    ours = load(setr('davpt', DATASET_SUFFIXES[0]))
    for key in ('decode_head', 'auxiliary_head', 'test_cfg'):
        assert unscoped(ours.model[key]) == unscoped(upstream.model[key]), key
    assert tuple(ours.model.backbone.out_indices) == upstream.model.backbone.out_indices
    # upstream's data loading, with broken images and masks stopping the run (strict_pipeline)
    expected = copy.deepcopy(upstream)
    expected.train_dataloader.dataset.pipeline = strict_pipeline(upstream.train_pipeline, 150)
    assert [t['type'] for t in expected.train_dataloader.dataset.pipeline][:3] == [
        'LoadImageFromFileStrict', 'LoadAnnotations', 'CheckSegMask']
    for key in ('train_cfg', 'param_scheduler', 'train_dataloader'):
        assert unscoped(ours[key]) == unscoped(expected[key]), key
    assert unscoped(ours.optim_wrapper.optimizer) == unscoped(upstream.optim_wrapper.optimizer)
    assert ours.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    for suffix in DATASET_SUFFIXES[1:]:
        pc = load(setr('davpt', suffix))
        assert pc.crop_size == (480, 480) and pc.train_cfg.max_iters == 80000
        assert pc.model.test_cfg.crop_size == (480, 480)
        assert [h.num_convs for h in pc.model.auxiliary_head] == [2, 2, 2]


# What each DA-VPT dataset config sets on the shared base (_base_/setr_pup_davpt_vit-l_8xb2.py):
# (classes, crop, slide stride, remap interval, iterations).
DATASET_SETTINGS = {
    DATASET_SUFFIXES[0]: (150, (512, 512), (341, 341), 1250, 160000),
    DATASET_SUFFIXES[1]: (59, (480, 480), (320, 320), 310, 80000),
    DATASET_SUFFIXES[2]: (60, (480, 480), (320, 320), 310, 80000),
}


@pytest.mark.parametrize('suffix', DATASET_SUFFIXES)
def test_dataset_configs_are_the_shared_recipe_on_their_dataset(suffix):
    num_classes, crop, stride, interval, iters = DATASET_SETTINGS[suffix]
    cfg = load(setr('davpt', suffix))
    model = cfg.model
    assert cfg.crop_size == crop and cfg.num_classes == num_classes
    assert model.data_preprocessor.size == model.backbone.img_size == crop
    assert cfg.data_preprocessor.size == crop
    assert model.test_cfg == dict(mode='slide', crop_size=crop, stride=stride)
    assert [h.num_classes for h in [model.decode_head, *model.auxiliary_head]] == \
        [num_classes] * 4
    assert [h.in_index for h in model.auxiliary_head] == [0, 1, 2]
    assert cfg.custom_hooks == [dict(type='SemanticMappingHook', interval=interval)]
    assert cfg.train_cfg.max_iters == iters
    # upstream's SETR SGD, the tuned backbone tensors at the heads' rate
    sgd = dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0)
    assert unscoped(cfg.optim_wrapper.optimizer) == unscoped(cfg.optimizer) == sgd
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert cfg.optim_wrapper.paramwise_cfg == dict(
        custom_keys=dict(head=dict(lr_mult=10.), backbone=dict(lr_mult=10.)))
    assert cfg.train_dataloader.batch_size == 2 and cfg.val_dataloader.batch_size == 1
    assert cfg.test_dataloader == cfg.val_dataloader
    checks = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'CheckSegMask']
    checks += [t for t in cfg.val_dataloader.dataset.pipeline if t.type == 'CheckSegMask']
    checks += [t[0] for t in cfg.tta_pipeline[-1].transforms if t[0].type == 'CheckSegMask']
    assert [t.num_classes for t in checks] == [num_classes] * 3


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_single_and_multi_scale_testing(path):
    test_tool = load_tool(osp.join('tools', 'test.py'))
    argv = [path, 'ckpt.pth', '--work-dir', '/tmp/x']
    plain = test_tool.merge_args(copy.deepcopy(load(path)), test_tool.parse_args(argv))
    assert all(t.type != 'TestTimeAug' for t in plain.test_dataloader.dataset.pipeline)
    tta = test_tool.merge_args(copy.deepcopy(load(path)), test_tool.parse_args(argv + ['--tta']))
    assert tta.model.type == 'SegTTAModel' and tta.model.module.type == plain.model.type
    aug = tta.test_dataloader.dataset.pipeline[-1]
    assert aug.type == 'TestTimeAug'
    scales, flips = aug.transforms[0], aug.transforms[1]
    assert [t.scale_factor for t in scales] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert sorted(t.prob for t in flips) == [0., 1.]
    init_default_scope('mmseg')
    for transform in tta.test_dataloader.dataset.pipeline:
        TRANSFORMS.build(transform)


@pytest.mark.parametrize('path', CONFIGS + [COMPOSING], ids=osp.basename)
def test_inferencer_pipeline(path):
    """MMSeg's MMSegInferencer takes the test pipeline: it finds ``LoadImageFromFile``, puts its
    in-memory loader in its place and drops ``LoadAnnotations`` (``CheckSegMask`` then passes)."""
    from mmseg.apis import MMSegInferencer
    cfg = copy.deepcopy(load(path))
    init_default_scope('mmseg')
    # _init_pipeline reads nothing of the inferencer but the config
    pipeline = MMSegInferencer._init_pipeline(MMSegInferencer.__new__(MMSegInferencer), cfg)
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    out = pipeline(image)
    assert out['inputs'].shape[0] == 3 and out['data_samples'].ori_shape == (40, 50)
    assert 'gt_sem_seg' not in out['data_samples']


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_runtime_hooks_come_from_the_bases(path):
    """Every config has the hooks of every mmdavpt run itself (not only through the CLI)."""
    cfg = load(path)
    assert cfg.default_hooks.config_guard.type == 'ConfigGuardHook'
    assert cfg.default_hooks.rng_state.type == 'RNGStateHook'
    assert not any(h.type in ('ConfigGuardHook', 'RNGStateHook') for h in cfg.custom_hooks)


def test_pascal_context_60_has_its_own_tta_pipeline():
    cfg = load(setr('davpt', DATASET_SUFFIXES[2]))
    assert cfg.train_dataloader.dataset.type == 'PascalContextDataset'
    assert len(DATASETS.get('PascalContextDataset').METAINFO['classes']) == 60
    assert cfg.tta_pipeline[-1].transforms[2] == [dict(type='LoadAnnotations')]


def test_meta_forward_shapes():
    model = build_meta(load(setr('davpt', DATASET_SUFFIXES[0])))
    with torch.device('meta'):
        feats = model.extract_feat(torch.empty(2, 3, 512, 512))
    assert [tuple(f.shape) for f in feats] == [(2, 1024, 32, 32)] * 4


def test_vit_l_512_batch_2_fits_24_gb_and_checkpointing_saves_memory():
    seg_memory = load_tool(osp.join('tools', 'analysis', 'seg_memory.py'))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    config = setr('davpt', DATASET_SUFFIXES[0])
    plain = seg_memory.count_training_memory(config, 512, 2, with_cp=False)
    with_cp = seg_memory.count_training_memory(config, 512, 2, with_cp=True)
    assert plain['static'] == with_cp['static']
    assert with_cp['peak'] < plain['peak'] < 24 * 2**30
    # the backbone's saved activations are ~10 D floats per token and layer; with_cp keeps ~1 D
    tokens = 2 * (1 + 20 + 32 * 32)
    assert plain['peak'] - with_cp['peak'] > 0.7 * 9 * 24 * tokens * 1024 * 4
    assert torch.nn.functional.scaled_dot_product_attention is sdpa  # the meta patch is undone
