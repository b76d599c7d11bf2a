"""What used to go silently wrong at run time: ``--resume`` with changed optimizer settings or
nothing to resume, a mask that does not fit its image, class weights with ignored pixels; and
the SLURM launcher."""
import logging
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import Runner
from mmseg.models.losses import CrossEntropyLoss

from mmdavpt.datasets import CheckSegMask
from mmdavpt.models.losses import ClassWeightedCrossEntropyLoss

from conftest import load_tool, shapes_task_cfg, write_shapes_task

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'demo', 'vit-s14-imgfocus_davpt_animal-mnist-56px.py')


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_resume_with_a_changed_learning_rate_says_which_one_is_in_effect(tmp_path):
    root = str(tmp_path / 'data')
    write_shapes_task(root)
    work_dir = tmp_path / 'run'
    Runner.from_cfg(shapes_task_cfg(root, work_dir, name='first')).train()  # AdamW, lr 1e-2

    cfg = shapes_task_cfg(root, work_dir, name='again', max_epochs=2)
    cfg.merge_from_dict(dict(resume=True, load_from=str(work_dir / 'epoch_1.pth'),
                             optim_wrapper=dict(optimizer=dict(lr=0.5, betas=(0.8, 0.9)))))
    runner = Runner.from_cfg(cfg)
    records = _Records()
    runner.logger.addHandler(records)
    try:
        runner.train()
    finally:
        runner.logger.removeHandler(records)
    warning, = [m for m in records.messages if 'optimizer/schedule setting' in m]
    assert ('3 optimizer/schedule setting(s) differ from the run that saved' in warning
            and 'epoch_1.pth' in warning)
    assert 'optim_wrapper.optimizer.lr: 0.01 -> 0.5' in warning
    assert 'optim_wrapper.optimizer.betas.0: <absent> -> 0.8' in warning
    assert "learning rate(s) of the checkpoint's parameter groups [0.01]" in warning
    # ... and that is the rate the resumed run trained with
    assert runner.optim_wrapper.get_lr()['lr'] == [0.01]


def _merged_train_args(monkeypatch, argv):
    train = load_tool('tools/train.py')
    monkeypatch.setattr(sys, 'argv', ['train.py', CONFIG, *argv])
    args = train.parse_args()
    return train.merge_args(Config.fromfile(args.config), args)


def test_resume_without_a_checkpoint_in_the_work_dir(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match=r'--resume: the work dir .*empty has no checkpoint'
                       r'.*"--resume auto" to train from scratch'):
        _merged_train_args(monkeypatch, ['--work-dir', str(tmp_path / 'empty'), '--resume'])
    # explicitly asked: MMPretrain's / MMSeg's auto-resume (from scratch when there is none)
    cfg = _merged_train_args(monkeypatch, ['--work-dir', str(tmp_path), '--resume', 'auto'])
    assert cfg.resume is True and cfg.load_from is None
    # plain --resume takes the latest checkpoint of the work dir
    ckpt = tmp_path / 'iter_5.pth'
    ckpt.write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(ckpt))
    cfg = _merged_train_args(monkeypatch, ['--work-dir', str(tmp_path), '--resume'])
    assert cfg.resume is True and cfg.load_from == str(ckpt)


def test_check_seg_mask_refuses_a_mask_of_another_size():
    check = CheckSegMask(num_classes=3)
    mask = np.zeros((4, 6), np.uint8)
    assert check(dict(gt_seg_map=mask, ori_shape=(4, 6), seg_map_path='m.png'))
    with pytest.raises(ValueError, match=r'mask m\.png is 4 x 6 \(H x W\) but its image a\.jpg is '
                       r'8 x 12: the labels would not line up'):
        check(dict(gt_seg_map=mask, ori_shape=(8, 12), img_path='a.jpg', seg_map_path='m.png'))
    with pytest.raises(KeyError, match='put it after LoadImageFromFile'):
        check(dict(gt_seg_map=mask, seg_map_path='m.png'))
    with pytest.raises(KeyError, match=r'mask m\.png is not loaded .*put it after LoadAnnotations'):
        check(dict(ori_shape=(4, 6), seg_map_path='m.png'))
    # an image without a mask (MMSegInferencer drops LoadAnnotations) passes as it is
    image_only = dict(img=np.zeros((4, 6, 3), np.uint8), ori_shape=(4, 6))
    assert check(image_only) is image_only


def test_class_weighted_cross_entropy_with_ignored_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    labels = torch.randint(0, 3, (2, 4, 5))
    weight = [0.3, 1.0, 2.0]
    upstream = CrossEntropyLoss(class_weight=weight)
    ours = ClassWeightedCrossEntropyLoss(class_weight=weight)
    # without ignored pixels: MMSeg's value
    assert torch.allclose(ours(logits, labels, ignore_index=255),
                          upstream(logits, labels, ignore_index=255))
    labels[0, 0] = 255
    with pytest.raises(IndexError):  # MMSeg 1.2.2's crash that this loss avoids
        upstream(logits, labels, ignore_index=255)
    expected = F.cross_entropy(logits, labels, weight=torch.tensor(weight), ignore_index=255)
    assert torch.allclose(ours(logits, labels, ignore_index=255), expected)
    labels[1, 1, 1] = 7
    with pytest.raises(ValueError, match=r'labels \[7\] are outside \[0, 3\) and not '
                       r'ignore_index=255; check the masks with CheckSegMask'):
        ours(logits, labels, ignore_index=255)


def test_slurm_train_script_runs_train_py_under_srun(tmp_path):
    """tools/slurm_train.sh with a stand-in ``srun`` that records what it was asked to run."""
    fake = tmp_path / 'bin' / 'srun'
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\n'
                    'echo "MASTER_PORT=$MASTER_PORT" > "$RECORD"\n'
                    'printf "%s\\n" "$@" >> "$RECORD"\n')
    fake.chmod(0o755)
    record = tmp_path / 'srun.txt'
    env = dict(os.environ, PATH=f'{fake.parent}:{os.environ["PATH"]}', RECORD=str(record),
               GPUS='16', GPUS_PER_NODE='8', PORT='29612', SRUN_ARGS='--quotatype=auto',
               PYTHON='mypython')
    subprocess.run(['bash', osp.join(ROOT, 'tools', 'slurm_train.sh'), 'gpu', 'job', 'cfg.py',
                    '--work-dir', 'w', '--resume'], env=env, check=True)
    lines = record.read_text().splitlines()
    assert lines[0] == 'MASTER_PORT=29612'
    assert lines[1:9] == ['-p', 'gpu', '--job-name=job', '--gres=gpu:8', '--ntasks=16',
                          '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1']
    assert lines[9] == '--quotatype=auto' and lines[10:12] == ['mypython', '-u']
    assert osp.samefile(lines[12], osp.join(ROOT, 'tools', 'train.py'))
    assert lines[13:] == ['cfg.py', '--launcher', 'slurm', '--work-dir', 'w', '--resume']


def test_resume_auto_in_an_empty_work_dir_trains_from_scratch_and_says_so(monkeypatch, tmp_path):
    root = str(tmp_path / 'data')
    write_shapes_task(root)
    config = str(tmp_path / 'tiny.py')
    shapes_task_cfg(root, tmp_path / 'unused').dump(config)
    work_dir = tmp_path / 'run'
    train = load_tool('tools/train.py')
    monkeypatch.setattr(sys, 'argv', ['train.py', config, '--work-dir', str(work_dir),
                                      '--resume', 'auto'])
    train.main()
    log, = work_dir.glob('*/*.log')
    assert (f'WARNING - --resume auto: no checkpoint in the work dir {work_dir}; training from '
            'scratch') in log.read_text()
    assert (work_dir / 'epoch_1.pth').is_file()
