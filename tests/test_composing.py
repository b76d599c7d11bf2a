"""The two example configs of docs/composing.md, which add DA-VPT to MMSeg's own
``setr/setr_vit-l_pup_8xb2-160k_ade20k-512x512.py`` and MMPretrain's own
``vision_transformer/vit-base-p16_32xb128-mae_in1k.py``: as written they keep upstream's backbone
features, hooks and learning-rate multipliers; shrunk to tiny sizes through ``--cfg-options``
(the values ``tools/train.py`` merges) they train a few iterations on tiny random data through
``tools/train.py``'s code path; broken data stops them naming the file or the data root."""
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from mmpretrain.models import VisionTransformer as PretrainViT
from mmseg.models.backbones import VisionTransformer as SegViT
from PIL import Image

from mmdavpt.datasets import ImageDecodeError
from mmdavpt.datasets.checks import check_datasets_not_empty
from mmdavpt.utils.cli import build_runner
from mmdavpt.utils.compose import mmseg_vit_to_davpt, strict_pipeline

from conftest import load_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
EXAMPLES = osp.join(ROOT, 'configs', 'composing')
SEG_EXAMPLE = osp.join(EXAMPLES, 'setr_vit-l_pup_davpt_8xb2-160k_ade20k-512x512.py')
CLS_EXAMPLE = osp.join(EXAMPLES, 'vit-base-p16_davpt_32xb128-mae_in1k.py')
TINY = dict(embed_dims=32, num_layers=4, num_heads=4, feedforward_channels=128)


def _train_tool():
    return load_tool('tools/train.py')


def _merged(config: str, work_dir, options: dict) -> Config:
    """The config as ``tools/train.py CONFIG --work-dir DIR --cfg-options ...`` prepares it."""
    tool = _train_tool()
    args = tool.parse_args([config, '--work-dir', str(work_dir)])
    args.cfg_options = options
    return tool.merge_args(Config.fromfile(config), args)


def _image(path, size, value=None, rng=None):
    os.makedirs(osp.dirname(path), exist_ok=True)
    h, w = size
    if value is None:
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    else:
        Image.fromarray(value).save(path)


# ------------------------------------------------------------------------- MMSeg: SETR-PUP ADE20K


def _write_ade(root, n=4, size=(40, 48)):
    """ADE20K layout: jpg images, png masks with 0 (ignored after reduce_zero_label) .. 150."""
    rng = np.random.default_rng(0)
    for split in ('training', 'validation'):
        for i in range(n):
            _image(osp.join(root, 'images', split, f'{i}.jpg'), size, rng=rng)
            mask = rng.integers(0, 151, size, dtype=np.uint8)
            _image(osp.join(root, 'annotations', split, f'{i}.png'), size, value=mask)


def _seg_options(root, ckpt) -> dict:
    heads = {f'model.auxiliary_head.{i}.{k}': v for i in range(3)
             for k, v in (('in_channels', 32), ('channels', 8))}
    loaders = {f'{loader}.{k}': v for loader in ('train_dataloader', 'val_dataloader')
               for k, v in (('num_workers', 0), ('persistent_workers', False),
                            ('dataset.data_root', root))}
    return {
        'model.backbone.arch': TINY, 'model.backbone.img_size': (32, 32),
        'model.backbone.patch_size': 8, 'model.backbone.out_indices': (0, 1, 2, 3),
        'model.backbone.num_prompts': 2, 'model.backbone.num_guided_prompts': 4,
        'model.backbone.init_cfg.checkpoint': ckpt,
        'model.data_preprocessor.size': (32, 32), 'model.test_cfg': dict(mode='whole'),
        'model.decode_head.in_channels': 32, 'model.decode_head.channels': 8, **heads,
        'train_dataloader.batch_size': 2, **loaders,
        'train_dataloader.dataset.pipeline.3.scale': (64, 32),  # RandomResize
        'train_dataloader.dataset.pipeline.4.crop_size': (32, 32),  # RandomCrop
        'val_dataloader.dataset.pipeline.1.scale': (64, 32),  # Resize
        'train_cfg.max_iters': 2, 'train_cfg.val_interval': 100,
        'custom_hooks.0.interval': 1, 'default_hooks.logger.interval': 1,
    }


@pytest.fixture
def seg_setup(tmp_path):
    root = str(tmp_path / 'ade')
    _write_ade(root)
    # MMSeg-layout weights, as upstream's pretrain/vit_large_p16.pth, of a tiny ViT
    vit = SegViT(img_size=(32, 32), patch_size=8, embed_dims=32, num_layers=4, num_heads=4,
                 mlp_ratio=4, drop_rate=0., with_cls_token=True, final_norm=False)
    ckpt = str(tmp_path / 'vit_tiny_mmseg.pth')
    torch.save({'state_dict': vit.state_dict()}, ckpt)
    return root, ckpt


def test_seg_example_keeps_upstreams_backbone_features():
    cfg = Config.fromfile(SEG_EXAMPLE)
    backbone = cfg.model.backbone
    assert cfg.model.type == 'DAVPTEncoderDecoder' and backbone.type == 'DAVPTViT'
    assert backbone.arch == dict(embed_dims=1024, num_layers=24, num_heads=16,
                                 feedforward_channels=4096)
    assert tuple(backbone.out_indices) == (9, 14, 19, 23) and backbone.final_norm is False
    assert tuple(backbone.img_size) == (512, 512) and backbone.patch_size == 16
    assert backbone.out_type == 'featmap' and backbone.interpolate_mode == 'bilinear'
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint='pretrain/vit_large_p16.pth')
    assert 'pretrained' not in backbone and cfg.model.pretrained is None
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys == {'head': dict(lr_mult=10.),
                                                           'backbone': dict(lr_mult=10.)}
    # strict loading for training; the test pipeline keeps the loader the inferencers look for
    for pipeline, loader in ((cfg.train_dataloader.dataset.pipeline, 'LoadImageFromFileStrict'),
                             (cfg.test_dataloader.dataset.pipeline, 'LoadImageFromFile')):
        types = [t.type for t in pipeline]
        assert types[0] == loader
        check = types.index('LoadAnnotations') + 1
        assert types[check] == 'CheckSegMask' and types.count('CheckSegMask') == 1
        assert pipeline[check].num_classes == 150 and pipeline[check].ignore_index == 255
    assert cfg.tta_pipeline[-1].transforms[3] == [dict(type='CheckSegMask', num_classes=150,
                                                       ignore_index=255)]
    assert cfg.tta_pipeline[0].type == 'LoadImageFromFile'


def test_seg_example_trains_at_tiny_size(seg_setup, tmp_path):
    root, ckpt = seg_setup
    cfg = _merged(SEG_EXAMPLE, tmp_path / 'work', _seg_options(root, ckpt))
    runner = build_runner(cfg)
    runner.train()
    model = runner.model
    assert type(model).__name__ == 'DAVPTEncoderDecoder'
    assert type(model.backbone).__name__ == 'DAVPTViT' and model.guidance is not None
    assert model.backbone.guided_layers == [3] and model.guidance.mapping.initialized
    hooks = [type(h).__name__ for h in runner.hooks]
    assert {'SemanticMappingHook', 'ConfigGuardHook'} <= set(hooks)
    # the prompts train at upstream's head rate (x10 of lr 1e-3), like the heads
    initial = {id(p): g['initial_lr'] for g in runner.optim_wrapper.param_groups
               for p in g['params']}
    assert initial[id(model.backbone.prompts[0])] == pytest.approx(0.01)
    assert initial[id(model.decode_head.conv_seg.weight)] == pytest.approx(0.01)
    assert runner.iter == 2


@pytest.mark.parametrize('damage, error, match', [
    ('empty_image', ImageDecodeError, r'image file is empty \(0 bytes\): .*images/training/1\.jpg'),
    ('small_mask', ValueError, r'mask .*annotations/training/1\.png is 20 x 24 \(H x W\) but its '
     r'image .*1\.jpg is 40 x 48'),
])
def test_seg_example_stops_on_broken_data(seg_setup, tmp_path, damage, error, match):
    root, ckpt = seg_setup
    if damage == 'empty_image':
        open(osp.join(root, 'images', 'training', '1.jpg'), 'wb').close()
    else:
        _image(osp.join(root, 'annotations', 'training', '1.png'), (20, 24),
               value=np.ones((20, 24), np.uint8))
    runner = build_runner(_merged(SEG_EXAMPLE, tmp_path / 'work', _seg_options(root, ckpt)))
    with pytest.raises(error, match=match):
        runner.train()


def test_an_empty_dataset_is_named_before_training(seg_setup, tmp_path):
    root, ckpt = seg_setup
    for name in os.listdir(osp.join(root, 'images', 'validation')):
        os.remove(osp.join(root, 'images', 'validation', name))
    cfg = _merged(SEG_EXAMPLE, tmp_path / 'work', _seg_options(root, ckpt))
    build_runner(cfg)  # sets the default scope, builds no dataset
    check_datasets_not_empty(cfg, ('train_dataloader', ))
    with pytest.raises(ValueError, match=r"val_dataloader: the dataset ADE20KDataset has no sample "
                       r"\(data_root='.*/ade', data_prefix=\{'img_path': 'images/validation'"):
        check_datasets_not_empty(cfg, ('train_dataloader', 'val_dataloader'))


def test_seg_example_test_pipelines_refuse_out_of_range_labels(tmp_path):
    """At test time such pixels would silently drop out of the mIoU."""
    cfg = Config.fromfile(SEG_EXAMPLE)
    rng = np.random.default_rng(0)
    _image(str(tmp_path / 'a.jpg'), (16, 16), rng=rng)
    mask = np.zeros((16, 16), np.uint8)
    mask[0, 0] = 200  # 199 after reduce_zero_label
    _image(str(tmp_path / 'a.png'), (16, 16), value=mask)
    init_default_scope('mmseg')
    for pipeline in (cfg.test_dataloader.dataset.pipeline, cfg.tta_pipeline):
        sample = dict(img_path=str(tmp_path / 'a.jpg'), seg_map_path=str(tmp_path / 'a.png'),
                      reduce_zero_label=True, seg_fields=[])
        with pytest.raises(ValueError, match=r'a\.png has label values outside \[0, 150\) that '
                           r'are not ignore_index=255: 199 \(1 px\)'):
            Compose(pipeline)(sample)


def test_mmseg_vit_to_davpt_refuses_what_it_cannot_reproduce():
    with pytest.raises(ValueError, match="converts MMSeg's VisionTransformer, got a backbone of "
                       "type 'MixVisionTransformer'"):
        mmseg_vit_to_davpt(dict(type='MixVisionTransformer'))
    with pytest.raises(ValueError, match=r'cannot reproduce .* output_cls_token=True'):
        mmseg_vit_to_davpt(dict(type='VisionTransformer', output_cls_token=True))
    with pytest.raises(ValueError, match=r"unknown to MMSeg VisionTransformer: \['embed_dim'\]"):
        mmseg_vit_to_davpt(dict(type='VisionTransformer', embed_dim=768))
    # MMSeg's defaults fill what the config leaves out; the model-level `pretrained` becomes
    # init_cfg; DA-VPT arguments win
    out = mmseg_vit_to_davpt(dict(type='VisionTransformer', attn_drop_rate=0.1),
                             pretrained='vit.pth', num_prompts=5)
    assert out['arch'] == dict(embed_dims=768, num_layers=12, num_heads=12,
                               feedforward_channels=3072)
    assert out['final_norm'] is False and out['out_indices'] == -1 and out['num_prompts'] == 5
    assert out['init_cfg'] == dict(type='Pretrained', checkpoint='vit.pth')
    assert out['layer_cfgs'] == dict(attn_drop_rate=0.1) and out['_delete_'] is True


def test_strict_pipeline_leaves_its_input_alone():
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    assert strict_pipeline(pipeline) == [dict(type='LoadImageFromFileStrict'),
                                         dict(type='PackInputs')]
    assert pipeline[0] == dict(type='LoadImageFromFile')
    # test pipelines: the mask checks without the strict loader
    seg = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
           dict(type='TestTimeAug', transforms=[[dict(type='LoadImageFromFile')],
                                                [dict(type='LoadAnnotations')]])]
    check = dict(type='CheckSegMask', num_classes=3, ignore_index=255)
    assert strict_pipeline(seg, num_classes=3, strict_loading=False) == [
        seg[0], seg[1], check,
        dict(type='TestTimeAug', transforms=[[dict(type='LoadImageFromFile')],
                                             [dict(type='LoadAnnotations')], [check]])]


# ------------------------------------------------------------ MMPretrain: ViT-B/16 (MAE recipe)


def _write_imagenet(root, per_class=2, classes=4):
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        lines = []
        for c in range(classes):
            for i in range(per_class):
                _image(osp.join(root, split, f'{c}_{i}.png'), (40, 40), rng=rng)
                lines.append(f'{c}_{i}.png {c}')
        os.makedirs(osp.join(root, 'meta'), exist_ok=True)
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')


def test_cls_example_keeps_upstreams_hooks_and_trains_at_tiny_size(tmp_path):
    cfg = Config.fromfile(CLS_EXAMPLE)
    assert [h.type for h in cfg.custom_hooks] == ['EMAHook', 'SemanticMappingHook']
    assert cfg.model.backbone.patch_size == 16 and cfg.model.backbone.arch == 'base'

    root = str(tmp_path / 'imagenet')
    _write_imagenet(root)
    vit = PretrainViT(arch=TINY, img_size=32, patch_size=8)
    ckpt = str(tmp_path / 'vit_tiny.pth')
    torch.save({'state_dict': vit.state_dict()}, ckpt)
    loaders = {f'{loader}.{k}': v for loader in ('train_dataloader', 'val_dataloader')
               for k, v in (('num_workers', 0), ('batch_size', 4), ('dataset.data_root', root))}
    options = {
        'model.backbone.arch': dict(_delete_=True, **TINY), 'model.backbone.img_size': 32,
        'model.backbone.patch_size': 8, 'model.backbone.num_prompts': 2,
        'model.backbone.num_guided_prompts': 2, 'model.backbone.init_cfg.checkpoint': ckpt,
        'model.head.in_channels': 32, **loaders,
        'train_dataloader.dataset.pipeline.1.scale': 32,  # RandomResizedCrop
        'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 10,
        'param_scheduler.0.end': 1, 'param_scheduler.1.begin': 1,  # warm-up, cosine
        'default_hooks.logger.interval': 1,
    }
    runner = build_runner(_merged(CLS_EXAMPLE, tmp_path / 'work', options))
    runner.train()
    model = runner.model
    assert type(model).__name__ == 'DAVPTImageClassifier'
    assert type(model.backbone).__name__ == 'DAVPTViT' and model.guidance is not None
    assert model.guidance.mapping.initialized
    hooks = [type(h).__name__ for h in runner.hooks]
    assert {'EMAHook', 'SemanticMappingHook', 'ConfigGuardHook'} <= set(hooks)
    assert runner.iter == 4
    # the frozen backbone holds the tiny pre-trained weights
    assert torch.equal(model.backbone.patch_embed.projection.weight,
                       vit.patch_embed.projection.weight)
