"""The shipped configs end to end on their real data layouts, through the CLIs as a user runs them.

For each family one shipped config runs ``tools/train.py`` (the ``SemanticMappingHook``'s first
pass over the training set included), then ``tools/test.py`` (and ``--tta`` for segmentation), as
subprocesses, on a small tree in the real on-disk layout with real-sized images
(:mod:`mmdavpt_lab.real_layouts`). The config is unchanged apart from:

- the data root;
- the iterations (2; an epoch of the tree for the epoch-based classification configs);
- the weights: there is no pre-trained checkpoint here, so ``model.backbone.init_cfg=None`` and
  ``model.backbone.allow_random_backbone=True``;
- the size, by default: a 64-wide ViT of 4 layers, 8-channel heads and half-side training
  crops (``REDUCED_*``, :func:`seg_reduced_options`); the data pipeline, the test's sliding
  window and scales, the image sizes and the layout stay the config's;
- a fixed seed, and every iteration logged.

``--full-size`` (tests/conftest.py) runs the shipped sizes instead (ViT-L/16 with 512 crops,
ViT-B/16 at 224) and prints each command's peak memory and seconds per iteration
(docs/reports/real_configs_cpu.md).
"""
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmdavpt.engine.hooks.mapping_hook import read_remap_history
from mmdavpt_lab.real_layouts import (
    ADE20K_CLASSES,
    ADE20K_SIZE,
    PASCAL_CONTEXT_CLASSES,
    PASCAL_CONTEXT_SIZE,
    build_ade20k,
    build_fgvc,
    build_pascal_context,
    build_vtab1k,
)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TTA_VIEWS = osp.join(osp.dirname(osp.abspath(__file__)), 'tta_views.py')
ADE20K_CONFIG = 'configs/setr_pup_davpt_ade20k.py'
PASCAL_CONTEXT_CONFIG = \
    'configs/segmentation/setr_pup_davpt_vit-l_8xb2-80k_pascal-context-{}-480x480.py'
VTAB_CONFIG = 'configs/classification/davpt/vit-b16-in21k_davpt_vtab-kitti.py'
FGVC_CONFIG = 'configs/classification/davpt/vit-b16-in21k_davpt_fgvc-oxford-flowers.py'
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
SIZES = ['reduced', pytest.param('full', marks=pytest.mark.full_size)]

#: The reduced ViT (every other setting of the backbone is the config's).
REDUCED_VIT = dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=128)
#: Channels of the reduced SETR-PUP heads (the configs' 256).
REDUCED_HEAD_CHANNELS = 8
#: Weights: no pre-trained checkpoint here, a random frozen backbone, named as such.
RANDOM_WEIGHTS = {'model.backbone.init_cfg': None, 'model.backbone.allow_random_backbone': True}
#: A fixed seed (the segmentation configs draw one per run) and every iteration logged.
RUN_OPTIONS = {'randomness.seed': 0, 'default_hooks.logger.interval': 1}


# ---- running the tools -----------------------------------------------------------------------
class ToolRun(NamedTuple):
    """A finished command: its output, peak resident memory (GiB) and wall time (s)."""
    output: str
    peak_rss_gib: float
    seconds: float


def run_tool(log: str, *args: str) -> ToolRun:
    """``python ARGS`` from the repository root with this repository's ``mmdavpt``, the output
    in ``log``; fails the test, with the output's end, unless it exits with 0."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get('PYTHONPATH')) if p))
    start = time.perf_counter()
    with open(log, 'w') as f:
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=f,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    with open(log) as f:
        output = f.read()
    assert proc.returncode == 0, f'{" ".join(args)} failed:\n{output[-6000:]}'
    return ToolRun(output, usage.ru_maxrss / 2**20, seconds)  # ru_maxrss: KiB on Linux


def cfg_options(options: Dict[str, object]) -> List[str]:
    """``--cfg-options`` arguments; tuples and None written as ``DictAction`` parses them."""
    def text(value):
        if isinstance(value, tuple):
            return '(' + ','.join(str(v) for v in value) + ')'
        return str(value)
    return ['--cfg-options', *(f'{key}={text(value)}' for key, value in options.items())]


def data_root_options(data_root: str) -> Dict[str, str]:
    return {f'{loader}.dataset.data_root': data_root for loader in LOADERS}


def reduced_vit_options() -> Dict[str, object]:
    """The reduced backbone: ``arch`` replaced by :data:`REDUCED_VIT`."""
    options = {'model.backbone.arch._delete_': True}
    options.update({f'model.backbone.arch.{k}': v for k, v in REDUCED_VIT.items()})
    return options


def log_dir(work_dir: str) -> str:
    """The one run (timestamped log dir) of a work dir."""
    runs = sorted(d for d in glob.glob(osp.join(work_dir, '2*')) if osp.isdir(d))
    assert len(runs) == 1, f'expected one run in {work_dir}, found {runs}'
    return runs[0]


def train_scalars(work_dir: str) -> List[dict]:
    """The logged training iterations (``vis_data/scalars.json`` lines with a loss)."""
    with open(osp.join(log_dir(work_dir), 'vis_data', 'scalars.json')) as f:
        return [r for r in map(json.loads, f) if 'loss' in r]


def read_test_metrics(work_dir: str) -> dict:
    """The metrics that ``tools/test.py`` wrote (``WORK_DIR/<timestamp>/<timestamp>.json``)."""
    files = glob.glob(osp.join(log_dir(work_dir), '*.json'))
    assert len(files) == 1, files
    with open(files[0]) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def report(name: str, run: ToolRun, seconds_per_iter: List[float] = ()) -> None:
    """One line of figures for the full-size runs (pytest -s shows them): the peak resident
    memory of the command's largest process, its wall time, and its seconds per iteration as
    logged (train: each iteration; test: the mean over the test images)."""
    per_iter = ', '.join(f'{s:.1f}' for s in seconds_per_iter)
    print(f'\n[e2e] {name}: peak RSS {run.peak_rss_gib:.2f} GiB, wall {run.seconds:.0f} s'
          + (f', s/iter {per_iter}' if per_iter else ''))


def check_training(work_dir: str, iters: int) -> List[float]:
    """The logged iterations are ``1..iters`` with finite losses; returns their times (s)."""
    scalars = train_scalars(work_dir)
    assert [r['iter'] for r in scalars] == list(range(1, iters + 1)), scalars
    assert all(math.isfinite(r['loss']) for r in scalars), scalars
    return [r['time'] for r in scalars]


# ---- segmentation ----------------------------------------------------------------------------
def seg_reduced_options(cfg: Config) -> Dict[str, object]:
    """The reduced SETR-PUP: :data:`REDUCED_VIT` with its features from all its layers, heads of
    :data:`REDUCED_HEAD_CHANNELS` channels on it, and training crops of half the config's side.

    The test keeps the config's sliding window (crop and stride): with a small model, the cost
    of MMSeg's slide inference is the number of windows times the full-image class scores each
    one adds (150 x H x W for ADE20K), so smaller windows would make it slower, not faster.
    """
    width = REDUCED_VIT['embed_dims']
    options = reduced_vit_options()
    options['model.backbone.out_indices'] = tuple(range(REDUCED_VIT['num_layers']))
    heads = ['model.decode_head'] + [
        f'model.auxiliary_head.{i}' for i in range(len(cfg.model.auxiliary_head))]
    for head in heads:
        options[f'{head}.in_channels'] = width
        options[f'{head}.channels'] = REDUCED_HEAD_CHANNELS
    crop = tuple(side // 2 for side in cfg.crop_size)
    pipeline = cfg.train_dataloader.dataset.pipeline
    index = next(i for i, step in enumerate(pipeline) if step['type'] == 'RandomCrop')
    options[f'train_dataloader.dataset.pipeline.{index}.crop_size'] = crop
    options['model.data_preprocessor.size'] = crop
    return options


def tta_ratios(cfg: Config) -> List[float]:
    """The scale factors of the config's ``tta_pipeline`` (its ``TestTimeAug`` resizes)."""
    tta = next(step for step in cfg.tta_pipeline if step['type'] == 'TestTimeAug')
    resizes = next(alts for alts in tta['transforms'] if alts[0]['type'] == 'Resize')
    return [r['scale_factor'] for r in resizes]


def expected_views(ratios: List[float], size) -> List[tuple]:
    """(h, w, flip) of each view of a ``size`` = (w, h) image: mmcv's ``imrescale`` rounding."""
    w, h = size
    return sorted((int(h * r + 0.5), int(w * r + 0.5), flip)
                  for r in ratios for flip in (False, True))


def run_seg(tmp_path, config: str, data_root: str, size: str, num_classes: int,
            tree_classes, image_size, num_test: int, reduce_zero_label: bool = True) -> None:
    """Train 2 iterations, then test single-scale and with ``--tta``; checks what each did.

    ``tree_classes``: the annotation ids painted in the tree besides 0; ``reduce_zero_label``:
    whether the dataset ignores 0 and reads id k as class k - 1 (else 0 is a class).
    """
    classes = {c - 1 for c in tree_classes} if reduce_zero_label else {0, *tree_classes}
    cfg = Config.fromfile(osp.join(ROOT, config))
    options = {**data_root_options(data_root), **RANDOM_WEIGHTS, **RUN_OPTIONS}
    if size == 'reduced':
        options.update(seg_reduced_options(cfg))
    work_dir = str(tmp_path / 'train')
    train = run_tool(str(tmp_path / 'train.log'), 'tools/train.py', config, '--work-dir',
                     work_dir, *cfg_options({**options, 'train_cfg.max_iters': 2}))
    times = check_training(work_dir, 2)
    assert 'mIoU' in train.output  # the validation at the end of training
    checkpoint = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(checkpoint)

    # The mapping hook's first pass over the training set: the initial mapping clustered the
    # classes seen, at least the ten guided prompts' worth (fewer would have stopped the run).
    initial, *later = read_remap_history(work_dir)
    assert initial.initial and not later
    assert 10 <= initial.num_seen_classes <= len(classes)
    # The annotations' ids were read with the dataset's convention (reduce_zero_label: id k is
    # class k - 1 and 0 is ignored): the 2 training iterations counted only classes of the tree.
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']
    assert int(state['guidance.mapping.num_remaps']) == 1
    counted = set(state['guidance.mapping.class_count'].nonzero().flatten().tolist())
    assert counted and counted <= classes, counted
    assert state['guidance.mapping.class_to_prompt'].shape == (num_classes, )
    report(f'{config} train ({size})', train, times)

    # Single scale: the 2048 x 512 resize, the sliding window, masks at the image's own size.
    pred_dir = tmp_path / 'pred'
    single = run_tool(str(tmp_path / 'test.log'), 'tools/test.py', config, checkpoint,
                      '--work-dir', str(tmp_path / 'test'), '--out', str(pred_dir),
                      *cfg_options(options))
    metrics = read_test_metrics(str(tmp_path / 'test'))
    assert 0 <= metrics['mIoU'] <= 100 and 0 <= metrics['aAcc'] <= 100, metrics
    masks = sorted(glob.glob(str(pred_dir / '*.png')))
    assert len(masks) == num_test
    for mask in masks:
        pred = np.asarray(Image.open(mask))
        assert pred.shape == image_size[::-1]
        # written in the annotations' ids (with reduce_zero_label, class c as c + 1)
        assert set(np.unique(pred).tolist()) <= set(
            range(int(reduce_zero_label), num_classes + int(reduce_zero_label)))
    report(f'{config} test ({size})', single, [metrics['time']])

    # Multi-scale + flip at the config's own scales.
    views_file = str(tmp_path / 'tta_views.jsonl')
    tta = run_tool(str(tmp_path / 'tta.log'), TTA_VIEWS, views_file, 'tools/test.py', config,
                   checkpoint, '--tta', '--work-dir', str(tmp_path / 'tta'),
                   *cfg_options(options))
    tta_metrics = read_test_metrics(str(tmp_path / 'tta'))
    assert 0 <= tta_metrics['mIoU'] <= 100 and 0 <= tta_metrics['aAcc'] <= 100, tta_metrics
    with open(views_file) as f:
        images = [image for line in f for image in json.loads(line)]
    assert len(images) == len(masks)
    ratios = tta_ratios(cfg)
    assert len(ratios) == 6  # 0.5 ... 1.75
    for image in images:
        got = sorted((*v['img_shape'], v['flip']) for v in image['views'])
        assert got == expected_views(ratios, image_size), image
    report(f'{config} test --tta ({size})', tta, [tta_metrics['time']])


@pytest.mark.parametrize('size', SIZES)
def test_ade20k_setr_pup_davpt(size, tmp_path):
    """configs/setr_pup_davpt_ade20k.py on ADEChallengeData2016."""
    data_root = build_ade20k(str(tmp_path / 'data'), num_train=12, num_val=1)
    run_seg(tmp_path, ADE20K_CONFIG, data_root, size, 150, ADE20K_CLASSES, ADE20K_SIZE, 1)


@pytest.mark.parametrize('num_classes', [59, 60])
def test_pascal_context_setr_pup_davpt(num_classes, tmp_path):
    """The PASCAL Context DA-VPT configs on VOC2010 (SegmentationClassContext, its split
    files): 59 classes ignore the background, 60 count it."""
    data_root = build_pascal_context(str(tmp_path / 'data'), num_train=12, num_val=1)
    run_seg(tmp_path, PASCAL_CONTEXT_CONFIG.format(num_classes), data_root, 'reduced',
            num_classes, PASCAL_CONTEXT_CLASSES, PASCAL_CONTEXT_SIZE, 1,
            reduce_zero_label=num_classes == 59)


# ---- classification --------------------------------------------------------------------------
def run_cls(tmp_path, config: str, data_root: str, size: str, num_classes: int,
            num_train: int) -> None:
    """Train one epoch of the tree (batch 32), select on val, test the best checkpoint."""
    options = {**data_root_options(data_root), **RANDOM_WEIGHTS, **RUN_OPTIONS}
    if size == 'reduced':
        options.update(reduced_vit_options())
        options['model.head.in_channels'] = REDUCED_VIT['embed_dims']
    work_dir = str(tmp_path / 'train')
    train = run_tool(str(tmp_path / 'train.log'), 'tools/train.py', config, '--work-dir',
                     work_dir, *cfg_options({**options, 'train_cfg.max_epochs': 1}))
    cfg = Config.fromfile(osp.join(ROOT, config))
    iters = math.ceil(num_train / cfg.train_dataloader.batch_size)
    times = check_training(work_dir, iters)
    # the first pass saw every class, the epoch's end remapped (interval=1 epoch)
    history = read_remap_history(work_dir)
    assert [r.when for r in history] == ['initial', 'after epoch 1']
    assert history[0].num_seen_classes == num_classes
    best = glob.glob(osp.join(work_dir, 'best_accuracy_top1_epoch_1.pth'))
    assert best, os.listdir(work_dir)  # selected on the val split
    state = torch.load(best[0], map_location='cpu', weights_only=False)['state_dict']
    assert int(state['guidance.mapping.num_remaps']) == 2
    report(f'{config} train ({size})', train, times)

    test = run_tool(str(tmp_path / 'test.log'), 'tools/test.py', config, best[0], '--work-dir',
                    str(tmp_path / 'test'), *cfg_options(options))
    metrics = read_test_metrics(str(tmp_path / 'test'))
    assert 0 <= metrics['accuracy/top1'] <= 100, metrics
    report(f'{config} test ({size})', test, [metrics['time']])


@pytest.mark.parametrize('size', SIZES)
def test_vtab1k_davpt(size, tmp_path):
    """A VTAB-1k DA-VPT config (KITTI, 4 classes, 1242 x 375 images) on the extracted form."""
    data_root = build_vtab1k(str(tmp_path / 'data'), tasks=('kitti', ), num_train=64,
                             num_val=8, num_test=8)
    run_cls(tmp_path, VTAB_CONFIG, data_root, size, 4, 64)


@pytest.mark.parametrize('size', SIZES)
def test_fgvc_davpt(size, tmp_path):
    """An FGVC DA-VPT config (Oxford Flowers, 102 classes) on VPT's json splits."""
    data_root = build_fgvc(str(tmp_path / 'data'), 'oxford_flowers', train_per_class=1,
                           num_val=8, num_test=8)
    run_cls(tmp_path, FGVC_CONFIG, data_root, size, 102, 102)
