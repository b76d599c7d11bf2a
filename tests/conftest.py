"""Shared test helpers (tests import them from here; no test imports another test module).

Every test runs in a process where ``mmdavpt`` is imported, as the CLIs do: its modules are
registered and ``torch.load`` (safe mode) accepts the checkpoints mmengine writes. Tiny models and
data (a few thousand parameters, CPU-fast), the tiny VTAB-style task and its config, the scripts
of ``tools/`` as modules.
"""
import importlib.util
import math
import os
import os.path as osp
import uuid
from types import ModuleType

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import BaseDataset
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmpretrain.structures import DataSample
from mmseg.structures import SegDataSample
from PIL import Image

import mmdavpt  # noqa: F401
from mmdavpt.registry import build_model

# One intra-op thread: the test models are tiny, and on a loaded 2-core machine a second thread
# makes them much slower, not faster.
torch.set_num_threads(1)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_ARCH = dict(embed_dims=32, num_layers=3, num_heads=4, feedforward_channels=64)
TINY_CLASSES = ('ant', 'bee', 'cat', 'dog', 'eel')


def load_tool(relpath: str) -> ModuleType:
    """A script under ``tools/`` (a path relative to the repository) as a module; ``tools/`` is
    not a package."""
    name = 'tool_' + osp.splitext(relpath)[0].replace('/', '_').replace(os.sep, '_')
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the opt-in full-size end-to-end runs ----------------------------------------------------
def pytest_addoption(parser):
    parser.addoption(
        '--full-size', action='store_true',
        help='also run the tests marked full_size: the end-to-end runs of tests/test_e2e at the '
        'shipped model sizes (ViT-L/16 with 512 crops, ViT-B/16 at 224; tens of minutes and '
        'about 11 GB of memory on a CPU; run with -s to see their figures)')


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'full_size: a shipped-size end-to-end run, skipped unless --full-size')


def pytest_collection_modifyitems(config, items):
    if config.getoption('--full-size'):
        return
    skip = pytest.mark.skip(reason='a full-size end-to-end run: pass --full-size')
    for item in items:
        if 'full_size' in item.keywords:
            item.add_marker(skip)


# ---- tiny models -----------------------------------------------------------------------------
def tiny_backbone_cfg(**kwargs) -> dict:
    """A random tiny DAVPTViT; tests that need pre-trained weights set ``init_cfg``."""
    cfg = dict(type='DAVPTViT', arch=TINY_ARCH, img_size=32, patch_size=8, num_prompts=3,
               num_guided_prompts=2, allow_random_backbone=True)
    cfg.update(kwargs)
    return cfg


def tiny_classifier_cfg(num_classes: int = 5, guidance: bool = True, fixed_mapping: bool = False,
                        **backbone) -> dict:
    """``fixed_mapping`` keeps the placeholder class->prompt mapping, for tests that call
    ``model.loss`` without a ``SemanticMappingHook``."""
    return dict(
        type='DAVPTImageClassifier',
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=num_classes,
                               mean=[127.5] * 3, std=[127.5] * 3),
        backbone=tiny_backbone_cfg(**backbone),
        neck=None,
        head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=32,
                  loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        guidance=dict(loss_xp=dict(type='PatchPromptLoss', loss_weight=0.5),
                      loss_pcls=dict(type='ClsPromptLoss', loss_weight=0.5),
                      mapping=dict(seed=0, fixed=fixed_mapping)) if guidance else None)


def tiny_seg_model(guidance: bool = True, fixed_mapping: bool = False,
                   ignore_classes=()):
    """A tiny DA-VPT segmentor (4 classes, 32 x 32 inputs); ``fixed_mapping``: see
    :func:`tiny_classifier_cfg`."""
    return build_model(dict(
        type='DAVPTEncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0, 0, 0], std=[1, 1, 1],
                               size=(32, 32), pad_val=0, seg_pad_val=255),
        backbone=tiny_backbone_cfg(out_type='featmap', out_indices=(1, 2)),
        decode_head=dict(type='SETRUPHead', in_channels=32, channels=16, in_index=1,
                         num_classes=4, num_convs=2, up_scale=2, kernel_size=3,
                         norm_cfg=dict(type='BN'), align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        guidance=dict(loss_xp=dict(type='PatchPromptLoss', loss_weight=0.1),
                      loss_pcls=dict(type='ClsPromptLoss', loss_weight=0.1),
                      mapping=dict(fixed=fixed_mapping),
                      ignore_classes=ignore_classes) if guidance
        else None), scope='mmseg')


def seg_samples(masks) -> list:
    """``SegDataSample``s of 32 x 32 images with the given 1 x 32 x 32 masks."""
    samples = []
    for m in masks:
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=m)
        s.set_metainfo(dict(img_shape=(32, 32), pad_shape=(32, 32)))
        samples.append(s)
    return samples


def class_features(C=12, D=8, per_class=5, seed=0, groups=3):
    """Features (C * per_class x D) and labels of C classes in `groups` well separated
    clusters."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(groups, D, generator=g) * 5
    feats, labels = [], []
    for c in range(C):
        base = centers[c % groups] + 0.3 * torch.randn(D, generator=g)
        feats.append(base + 0.05 * torch.randn(per_class, D, generator=g))
        labels.append(torch.full((per_class, ), c))
    return torch.cat(feats), torch.cat(labels)


# ---- tiny data and runs ----------------------------------------------------------------------
class TinyClsDataset(BaseDataset):
    """Random 32x32 images whose mean colour depends on the class (learnable, deterministic)."""

    def __init__(self, num_classes: int = 5, per_class: int = 4, seed: int = 0) -> None:
        self.num_classes = num_classes
        self.per_class = per_class
        self.seed = seed
        super().__init__(lazy_init=False, serialize_data=False)

    def load_data_list(self):
        rng = np.random.default_rng(self.seed)
        items = []
        for c in range(self.num_classes):
            for _ in range(self.per_class):
                img = rng.integers(0, 60, (3, 32, 32)) + 40 * c
                items.append(dict(img=img.astype(np.uint8), label=c))
        return items

    def prepare_data(self, idx):
        item = self.get_data_info(idx)
        return dict(inputs=torch.from_numpy(item['img']),
                    data_samples=DataSample().set_gt_label(item['label']))


def tiny_mapping_runner(work_dir, train_cfg, hook=None, sampler=None, **kwargs) -> Runner:
    """A Runner of the tiny classifier on :class:`TinyClsDataset` with ``hook`` (default: a
    ``SemanticMappingHook``) and ``sampler`` (default: a shuffling ``DefaultSampler``)."""
    # a unique experiment name: Runners built within the same second would share one logger
    kwargs.setdefault('experiment_name', f'{os.path.basename(work_dir)}-{uuid.uuid4().hex}')
    return Runner(
        model=tiny_classifier_cfg(num_classes=5),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=TinyClsDataset(5, per_class=4),
                              sampler=sampler or dict(type='DefaultSampler', shuffle=True),
                              batch_size=4, num_workers=0,
                              collate_fn=dict(type='pseudo_collate')),
        train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.01)),
        custom_hooks=[hook or dict(type='SemanticMappingHook')],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        default_scope='mmpretrain',
        randomness=dict(seed=0),
        **kwargs)


def write_tiny_vtab(root: str, per_class=None) -> str:
    """A VTAB-1k-style task of 32x32 PNGs whose colour depends on the class; returns data_root."""
    per_class = per_class or dict(train800=4, val200=2, test=2)
    task = osp.join(root, 'tiny_task')
    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        lines = []
        for c in range(len(TINY_CLASSES)):
            for i in range(n):
                rel = f'images/{split}/{c}_{i}.png'
                img = (rng.integers(0, 60, (32, 32, 3)) + 40 * c).astype(np.uint8)
                path = osp.join(task, rel)
                os.makedirs(osp.dirname(path), exist_ok=True)
                Image.fromarray(img).save(path)
                lines.append(f'{rel} {c}')
        with open(osp.join(task, f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    with open(osp.join(task, 'classes.txt'), 'w') as f:
        f.write('\n'.join(TINY_CLASSES) + '\n')
    return root


def write_tiny_config(tmp_path, name: str = 'tiny_davpt.py', max_epochs: int = 2,
                      guidance: bool = True, **backbone) -> str:
    """A complete MMPretrain config file: tiny DA-VPT model on the tiny VTAB-style task."""
    data_root = str(tmp_path / 'data')
    if not osp.isdir(data_root):
        write_tiny_vtab(data_root)
    pipeline = [dict(type='LoadImageFromFileStrict'), dict(type='PackInputs')]
    dataset = dict(type='VTAB1kDataset', data_root=data_root, task='tiny_task',
                   pipeline=pipeline)

    def loader(split, shuffle):
        return dict(batch_size=5, num_workers=0, dataset=dict(**dataset, split=split),
                    sampler=dict(type='DefaultSampler', shuffle=shuffle))

    cfg = dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['mmdavpt', 'mmdavpt.datasets'],
                            allow_failed_imports=False),
        model=tiny_classifier_cfg(num_classes=len(TINY_CLASSES), guidance=guidance, **backbone),
        train_dataloader=loader('train800', True),
        val_dataloader=loader('val200', False),
        test_dataloader=loader('test', False),
        val_evaluator=dict(type='Accuracy', topk=(1, )),
        test_evaluator=dict(type='Accuracy', topk=(1, )),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        val_cfg=dict(),
        test_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2, weight_decay=1e-4)),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(type='CheckpointHook', interval=1, save_best='accuracy/top1',
                            rule='greater')),
        custom_hooks=[dict(type='SemanticMappingHook')] if guidance else [],
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
        randomness=dict(seed=0),
    )
    path = str(tmp_path / name)
    Config(cfg).dump(path)
    return path


# ---- a tiny VTAB-1k task with a training config ----------------------------------------------
NUM_CLASSES = 4
TASK = 'shapes'




def write_shapes_task(root, per_class=2):
    """A VTAB-1k-style custom task: 32 x 32 PNGs whose colour depends on the class."""
    rng = np.random.default_rng(0)
    task_dir = osp.join(root, TASK)
    for split in ('train800', 'val200'):
        lines = []
        for c in range(NUM_CLASSES):
            for i in range(per_class):
                rel = f'images/{split}/{c}_{i}.png'
                os.makedirs(osp.dirname(osp.join(task_dir, rel)), exist_ok=True)
                img = (rng.integers(0, 60, (32, 32, 3)) + 50 * c).astype(np.uint8)
                Image.fromarray(img).save(osp.join(task_dir, rel))
                lines.append(f'{rel} {c}')
        with open(osp.join(task_dir, f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    with open(osp.join(task_dir, 'classes.txt'), 'w') as f:
        f.write('\n'.join(f'class{c}' for c in range(NUM_CLASSES)) + '\n')
    return task_dir


def shapes_task_cfg(root, work_dir, name='run', max_epochs=1, batch_size=4, hooks=(),
                    **backbone) -> Config:
    """A config training the tiny classifier on :func:`write_shapes_task`'s task."""
    dataset = dict(type='VTAB1kDataset', data_root=root, task=TASK,
                   pipeline=[dict(type='LoadImageFromFileStrict'), dict(type='PackInputs')])
    loader = dict(batch_size=batch_size, num_workers=0, collate_fn=dict(type='default_collate'))
    return Config(dict(
        default_scope='mmpretrain',
        experiment_name=name,
        work_dir=str(work_dir),
        model=tiny_classifier_cfg(num_classes=NUM_CLASSES, **backbone),
        train_dataloader=dict(dataset=dict(dataset, split='train800'),
                              sampler=dict(type='DefaultSampler', shuffle=True), **loader),
        test_dataloader=dict(dataset=dict(dataset, split='val200'),
                             sampler=dict(type='DefaultSampler', shuffle=False), **loader),
        test_evaluator=dict(type='Accuracy', topk=(1, )),
        test_cfg=dict(),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.01)),
        custom_hooks=[dict(type='SemanticMappingHook'), dict(type='ConfigGuardHook'),
                      *hooks],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0)))


# ---- the prompt metric loss, written plainly --------------------------------------------------
def reference_loss(samples, prompts, positive, margin, temperature, positive_norm='present'):
    """Eq. 4 written plainly with Python loops; ``positive_norm='all'`` divides the positive sum
    by M (the official code), ``'present'`` by the prompts with a positive sample (the paper)."""
    M = prompts.shape[0]
    pos_terms, neg_terms = [], []
    for k in range(M):
        p = prompts[k] / prompts[k].norm()
        pos_sum, neg_sum, has_pos = 0.0, 0.0, False
        for i in range(samples.shape[0]):
            s = float(p @ (samples[i] / samples[i].norm()))
            if positive[i, k]:
                has_pos = True
                pos_sum += math.exp(-(s - margin) / temperature)
            else:
                neg_sum += math.exp((s + margin) / temperature)
        if has_pos:
            pos_terms.append(math.log(1 + pos_sum))
        neg_terms.append(math.log(1 + neg_sum))
    denominator = M if positive_norm == 'all' else max(len(pos_terms), 1)
    return sum(pos_terms) / denominator + sum(neg_terms) / M


# ---- synthetic timing series ------------------------------------------------------------------
def exact_series(mean: float, std: float, n: int) -> list:
    """``n`` evenly spaced values with exactly this mean and sample standard deviation."""
    raw = [i - (n - 1) / 2 for i in range(n)]
    scale = std / math.sqrt(sum(v * v for v in raw) / (n - 1))
    return [mean + scale * v for v in raw]


def paired_times(ratio: float, log_std: float, n: int, base_s: float = 3.0) -> tuple:
    """(model, baseline) times in seconds of ``n`` rounds: the baseline swings with the load
    (1x to 3.7x, the same for both within a round), the model is ``ratio`` times slower with log
    ratios of sample standard deviation ``log_std`` (geometric mean exactly ``ratio``)."""
    load = [1 + 3 * ((7 * r) % n) / n for r in range(n)]
    base = [base_s * f for f in load]
    logs = exact_series(math.log(ratio), log_std, n)
    return [b * math.exp(d) for b, d in zip(base, logs)], base
