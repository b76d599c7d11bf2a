"""The stack mmdavpt stands on: mmcv ops, upstream SETR-PUP and ViT models, mmengine checkpoints
on torch >= 2.6 (weights_only loading), and the train/test CLIs."""
import copy
import importlib.util
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from mmdavpt.utils import CPUAmpOptimWrapper, mmengine_safe_globals

from conftest import load_tool

ROOT = Path(__file__).resolve().parents[1]


def upstream_config(package: str, path: str) -> str:
    """The file behind ``package::path`` (the configs MMSeg and MMPretrain install)."""
    return str(Path(importlib.import_module(package).__file__).parent / '.mim' / 'configs' / path)


SETR_CFG = upstream_config('mmseg', 'setr/setr_vit-l_pup_8xb2-160k_ade20k-512x512.py')
VIT_CFG = upstream_config('mmpretrain', 'vision_transformer/vit-base-p16_64xb64_in1k.py')


def run_python(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          check=False, timeout=300)


# ---------------------------------------------------------------- imports and mmcv ops


def test_imports_and_mmcv_ops_on_cpu():
    """mmcv 2.1.0 built with ops. ``sigmoid_focal_loss`` has no CPU kernel in mmcv 2.1.0 (MMSeg's
    FocalLoss falls back to PyTorch on CPU), so the compiled ops checked here are ones that do:
    roi_align, nms and psamask, against torchvision or by construction."""
    import mmcv
    import mmcv.ops
    import mmpretrain  # noqa: F401
    import mmseg  # noqa: F401
    import torchvision

    import mmdavpt  # noqa: F401
    assert mmcv.__version__ == '2.1.0'

    # point_sample at pixel centres returns the pixels themselves.
    feats = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    ys, xs = torch.meshgrid(torch.arange(4), torch.arange(5), indexing='ij')
    points = torch.stack([(xs + 0.5) / 5, (ys + 0.5) / 4], dim=-1).reshape(1, 20, 2).repeat(2, 1, 1)
    sampled = mmcv.ops.point_sample(feats, points, align_corners=False)
    assert sampled.shape == (2, 3, 20)
    torch.testing.assert_close(sampled, feats.flatten(2))

    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(1, 2, 8, 8, generator=gen)
    rois = torch.tensor([[0, 0.5, 1.0, 6.5, 7.0], [0, 2.0, 2.0, 5.0, 4.0]])
    out = mmcv.ops.roi_align(feats, rois, (3, 3), 1.0, 2, 'avg', True)
    assert out.shape == (2, 2, 3, 3)
    torch.testing.assert_close(out, torchvision.ops.roi_align(feats, rois, (3, 3), 1.0, 2, True))

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = mmcv.ops.nms(boxes, scores, 0.5)
    assert keep.tolist() == torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert dets.shape == (2, 5)

    # psamask 'collect' with a 1x1 mask: every position attends to itself only.
    mask = mmcv.ops.PSAMask('collect', (1, 1))(torch.ones(1, 1, 3, 4))
    assert mask.shape == (1, 12, 3, 4)
    torch.testing.assert_close(mask.flatten(2)[0], torch.eye(12))


# ---------------------------------------------------------------- upstream models


def _bn_instead_of_syncbn(cfg):
    if isinstance(cfg, dict):
        if cfg.get('type') == 'SyncBN':
            cfg['type'] = 'BN'
        for value in cfg.values():
            _bn_instead_of_syncbn(value)
    elif isinstance(cfg, list):
        for item in cfg:
            _bn_instead_of_syncbn(item)


def _assert_trains(model: nn.Module, losses: dict) -> torch.Tensor:
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    return loss


def test_mmseg_setr_pup_loss_step():
    """MMSeg's own SETR-PUP (ViT-L/16 widths, 4 of the 24 layers, 64x64 input, BN for SyncBN)."""
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    init_default_scope('mmseg')
    cfg = Config.fromfile(SETR_CFG).model
    cfg.pretrained = None
    cfg.backbone.update(init_cfg=None, img_size=(64, 64), num_layers=4, out_indices=(0, 1, 2, 3))
    cfg.data_preprocessor.size = (64, 64)
    _bn_instead_of_syncbn(cfg)
    model = MODELS.build(cfg)
    assert type(model).__name__ == 'EncoderDecoder'
    assert type(model.decode_head).__name__ == 'SETRUPHead' and len(model.auxiliary_head) == 3

    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, 64, 64), generator=gen))
        samples.append(sample)
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=gen)
              for _ in range(2)]
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), training=True)
    model.train()
    losses = model.loss(data['inputs'], data['data_samples'])
    assert {'decode.loss_ce', 'aux_0.loss_ce', 'aux_1.loss_ce', 'aux_2.loss_ce'} <= set(losses)
    _assert_trains(model, losses)


def test_mmpretrain_vit_classifier_loss_step():
    """MMPretrain's own ViT classifier config (with its Mixup), shrunk to DeiT-tiny at 32x32."""
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    init_default_scope('mmpretrain')
    full = Config.fromfile(VIT_CFG)
    cfg = full.model
    cfg.backbone.update(arch='deit-tiny', img_size=32, init_cfg=None)
    cfg.head.update(in_channels=192, hidden_dim=64)
    cfg.data_preprocessor = full.data_preprocessor
    model = MODELS.build(cfg)
    assert type(model.backbone).__name__ == 'VisionTransformer'

    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=gen)
              for _ in range(4)]
    samples = [DataSample().set_gt_label(label) for label in (0, 1, 2, 999)]
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), training=True)
    model.train()
    losses = model.loss(data['inputs'], data['data_samples'])
    _assert_trains(model, losses)


# ---------------------------------------------------------------- mmengine checkpoints


class TinyModel(BaseModel):

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.linear = nn.Linear(4, 2)

    def forward(self, inputs, labels, mode='tensor'):
        logits = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=nn.functional.cross_entropy(logits, labels))
        if mode == 'predict':
            return list(zip(logits.argmax(1), labels))
        return logits


class TinyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, index):
        gen = torch.Generator().manual_seed(index)
        return dict(inputs=torch.randn(4, generator=gen), labels=torch.tensor(index % 2))


class NumpyAccuracy(BaseMetric):
    """Returns a numpy scalar, as MM metrics do, so the checkpoint holds one (best score)."""

    def process(self, data_batch, data_samples):
        self.results += [float(pred == label) for pred, label in data_samples]

    def compute_metrics(self, results):
        return dict(acc=np.float64(np.mean(results)))


class Snapshot(Hook):
    """Records the runner's state when training starts, i.e. right after load/resume."""

    def before_train(self, runner):
        self.epoch, self.iter = runner.epoch, runner.iter
        self.weights = copy.deepcopy(runner.model.state_dict())
        self.optimizer = copy.deepcopy(runner.optim_wrapper.state_dict())
        self.scheduler = runner.param_schedulers[0].state_dict()
        loss = runner.message_hub.log_scalars.get('train/loss')
        self.loss_history = None if loss is None else loss.data[0].copy()
        self.best_score = runner.message_hub.get_info('best_score')


def tiny_runner(work_dir: Path, name: str, max_epochs: int, **kwargs) -> Runner:
    loader = dict(dataset=TinyData(), batch_size=4, num_workers=0,
                  sampler=dict(type='DefaultSampler', shuffle=True),
                  collate_fn=dict(type='default_collate'))
    return Runner(
        model=kwargs.pop('model', TinyModel()), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=loader, val_dataloader=loader, val_evaluator=dict(type=NumpyAccuracy),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1), val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1], by_epoch=True),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, save_best='acc',
                                           rule='greater')),
        randomness=dict(seed=0), log_level='WARNING', **kwargs)


@pytest.fixture(scope='module')
def runner_ckpt(tmp_path_factory) -> Path:
    """A real Runner checkpoint after 2 epochs: message hub buffers, numpy scalars, schedulers."""
    work_dir = tmp_path_factory.mktemp('runner')
    tiny_runner(work_dir, 'tiny_train', max_epochs=2).train()
    return work_dir / 'epoch_2.pth'


def _assert_tree_equal(a, b):
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_tree_equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_tree_equal(x, y)
    else:
        assert a == b


def test_checkpoint_holds_exactly_allowlisted_non_tensor_objects(runner_ckpt):
    ckpt = torch.load(runner_ckpt, weights_only=True)
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    assert isinstance(ckpt['message_hub']['runtime_info']['best_score'], np.float64)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(runner_ckpt)) == []
    # The statistics methods pickled as getattr(HistoryBuffer, name) come back as themselves.
    buffer = ckpt['message_hub']['log_scalars']['train/loss']
    assert buffer.statistics('mean') == buffer._log_history.mean()


def test_checkpoint_needs_the_fix_and_import_mmdavpt_applies_it(runner_ckpt):
    """In a fresh process stock ``torch.load`` rejects the checkpoint; after ``import mmdavpt``
    the same call loads it."""
    code = ('import sys, torch\n'
            'path = sys.argv[1]\n'
            'torch.load(path, weights_only=False)\n'
            'try:\n'
            '    torch.load(path)\n'
            'except Exception as e:\n'
            "    assert 'Weights only load failed' in str(e), e\n"
            'else:\n'
            "    sys.exit('stock torch.load accepted the checkpoint')\n"
            'import mmdavpt\n'
            "assert torch.load(path)['meta']['epoch'] == 2\n")
    result = run_python('-c', code, str(runner_ckpt))
    assert result.returncode == 0, result.stderr


def test_allowlisted_getattr_resolves_only_history_buffer_statistics(tmp_path):

    class AnyAttribute:

        def __reduce__(self):
            return getattr, (HistoryBuffer, '__init__')

    path = tmp_path / 'evil.pth'
    torch.save({'x': AnyAttribute()}, path)
    with pytest.raises(pickle.UnpicklingError, match='not allowed'):
        torch.load(path)


def test_runner_resume_restores_saved_state(runner_ckpt):
    saved = torch.load(runner_ckpt)
    snapshot = Snapshot()
    runner = tiny_runner(runner_ckpt.parent, 'tiny_resume', max_epochs=3, resume=True,
                         load_from=str(runner_ckpt), custom_hooks=[snapshot])
    runner.train()
    assert (snapshot.epoch, snapshot.iter) == (2, 4) == (saved['meta']['epoch'],
                                                         saved['meta']['iter'])
    assert (runner.epoch, runner.iter) == (3, 6)
    _assert_tree_equal(snapshot.weights, saved['state_dict'])
    _assert_tree_equal(snapshot.optimizer, saved['optimizer'])
    assert snapshot.optimizer['state'], 'SGD momentum buffers were not restored'
    _assert_tree_equal(snapshot.scheduler, saved['param_schedulers'][0])
    np.testing.assert_array_equal(
        snapshot.loss_history, saved['message_hub']['log_scalars']['train/loss']._log_history)
    assert snapshot.best_score == saved['message_hub']['runtime_info']['best_score']


def test_runner_load_from_loads_weights_only(runner_ckpt, tmp_path):
    saved = torch.load(runner_ckpt)
    snapshot = Snapshot()
    runner = tiny_runner(tmp_path, 'tiny_load_from', max_epochs=1, load_from=str(runner_ckpt),
                         custom_hooks=[snapshot])
    runner.train()
    _assert_tree_equal(snapshot.weights, saved['state_dict'])
    assert (snapshot.epoch, snapshot.iter) == (0, 0)
    assert snapshot.loss_history is None and snapshot.best_score is None


def test_pretrained_init_cfg_loads_runner_checkpoint(runner_ckpt):
    saved = torch.load(runner_ckpt)
    model = TinyModel(init_cfg=dict(type='Pretrained', checkpoint=str(runner_ckpt)))
    assert not torch.equal(model.linear.weight, saved['state_dict']['linear.weight'])
    model.init_weights()
    _assert_tree_equal(model.state_dict(), saved['state_dict'])


def test_allowlist_names_resolve_to_their_objects():
    """Every entry is registered under the path pickle writes for that object."""
    for obj, name in mmengine_safe_globals():
        module, _, qualname = name.rpartition('.')
        if name == 'builtins.getattr':
            continue
        assert getattr(importlib.import_module(module), qualname) is obj, name


# ---------------------------------------------------------------- CPU AMP and the CLIs


def test_cpu_amp_optim_wrapper_autocasts_to_bfloat16():
    model = nn.Linear(4, 2)
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        assert model(torch.randn(3, 4)).dtype == torch.bfloat16
    assert model(torch.randn(3, 4)).dtype == torch.float32


def _merged(tool, monkeypatch, argv):
    monkeypatch.setattr(sys, 'argv', ['prog', *argv])
    args = tool.parse_args()
    return tool.merge_args(Config.fromfile(args.config), args)


def test_train_cli_merges_args_per_scope(monkeypatch, tmp_path):
    train = load_tool('tools/train.py')
    cfg = _merged(train, monkeypatch, [VIT_CFG, '--amp', '--resume', 'auto'])
    amp = 'AmpOptimWrapper' if torch.cuda.is_available() else 'CPUAmpOptimWrapper'
    assert cfg.optim_wrapper.type == amp
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.work_dir == os.path.join('./work_dirs', 'vit-base-p16_64xb64_in1k')
    assert cfg.train_dataloader.collate_fn == dict(type='default_collate')
    assert cfg.train_dataloader.persistent_workers is True  # the config has 5 workers

    cfg = _merged(train, monkeypatch, [SETR_CFG, '--resume', 'ck.pth', '--work-dir',
                                       str(tmp_path), '--cfg-options', 'train_cfg.max_iters=7'])
    assert cfg.resume is True and cfg.load_from == 'ck.pth'
    assert cfg.work_dir == str(tmp_path) and cfg.train_cfg.max_iters == 7
    assert 'collate_fn' not in cfg.train_dataloader
    assert cfg.optim_wrapper.type == 'OptimWrapper'

    # the reliability hooks are added once; --allow-config-change reaches the listed guard
    assert [h['type'] for h in cfg.custom_hooks] == ['ConfigGuardHook', 'RNGStateHook']
    assert 'allow_config_change' not in cfg.custom_hooks[0]
    monkeypatch.setattr(sys, 'argv', ['prog', SETR_CFG, '--allow-config-change'])
    cfg = Config.fromfile(SETR_CFG)
    cfg.custom_hooks = [dict(type='ConfigGuardHook')]
    cfg = train.merge_args(cfg, train.parse_args())
    assert cfg.custom_hooks == [dict(type='ConfigGuardHook', allow_config_change=True),
                                dict(type='RNGStateHook')]

    with pytest.raises(ValueError, match='default_scope'):
        _merged(train, monkeypatch, [SETR_CFG, '--cfg-options', 'default_scope=mmdet'])


def test_test_cli_tta_and_out_per_scope(monkeypatch, tmp_path):
    test = load_tool('tools/test.py')
    cfg = _merged(test, monkeypatch, [SETR_CFG, 'ck.pth', '--tta', '--out', str(tmp_path)])
    assert cfg.load_from == 'ck.pth'
    assert cfg.model.type == 'SegTTAModel' and cfg.model.module.type == 'EncoderDecoder'
    assert cfg.test_dataloader.dataset.pipeline == cfg.tta_pipeline
    assert cfg.test_evaluator.output_dir == str(tmp_path) and cfg.test_evaluator.keep_results
    assert [h['type'] for h in cfg.custom_hooks] == ['ConfigGuardHook']

    cfg = _merged(test, monkeypatch, [VIT_CFG, 'ck.pth', '--tta'])
    assert cfg.model.type == 'mmpretrain.AverageClsScoreTTA'
    assert cfg.model.module.type == 'ImageClassifier'
    assert cfg.test_dataloader.dataset.pipeline[-1].type == 'TestTimeAug'


def test_cli_help():
    """Both scripts run standalone (one interpreter for both, to save its start-up)."""
    code = ('import runpy, sys\n'
            "for tool in ('train', 'test'):\n"
            "    sys.argv = [f'tools/{tool}.py', '--help']\n"
            '    try:\n'
            "        runpy.run_path(sys.argv[0], run_name='__main__')\n"
            '    except SystemExit as end:\n'
            '        assert end.code == 0, end.code\n')
    result = run_python('-c', code)
    assert result.returncode == 0, result.stderr
    train_help, _, test_help = result.stdout.partition('usage: test.py')
    assert train_help.startswith('usage: train.py') and '--resume [RESUME]' in train_help
    assert '--tta' in test_help and '--out OUT' in test_help
    assert all('--cfg-options' in text and '--launcher' in text for text in (train_help, test_help))
