"""``mmdavpt.utils.cli``: the process-wide settings the tools ask for, ``--amp`` on either
device, and what tools/test.py does with an ``--out`` file that exists."""
import argparse
import glob
import os.path as osp
import pickle
import warnings

import torch
from mmengine.runner import Runner

from mmdavpt.utils.cli import (
    PKG_RESOURCES_WARNING,
    add_common_args,
    ignore_pkg_resources_warning,
    merge_test_args,
    parse_common_args,
    run_test,
)

from conftest import shapes_task_cfg, write_shapes_task


def _shown(*messages):
    """Which of ``(category, text)`` warnings show under the filters in force."""
    with warnings.catch_warnings(record=True) as caught:
        for category, text in messages:
            warnings.warn(text, category, stacklevel=1)
    return [(w.category, str(w.message)) for w in caught]


def test_the_tools_ignore_the_pkg_resources_warning_and_no_other():
    deprecated = (UserWarning, f'{PKG_RESOURCES_WARNING}. See https://setuptools.pypa.io')
    others = [(UserWarning, 'a checkpoint key is missing'),
              (DeprecationWarning, f'{PKG_RESOURCES_WARNING} (another category)'),
              (UserWarning, f'see: {PKG_RESOURCES_WARNING}')]
    with warnings.catch_warnings():
        warnings.simplefilter('always')
        assert _shown(deprecated, *others) == [deprecated, *others]
        ignore_pkg_resources_warning()
        assert _shown(deprecated, *others) == others


def test_parse_common_args_ignores_it():
    parser = argparse.ArgumentParser()
    add_common_args(parser, example='a=1')
    deprecated = (UserWarning, PKG_RESOURCES_WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter('always')
        parse_common_args(parser, ['--cfg-options', 'a=1'])
        assert _shown(deprecated, (UserWarning, 'other')) == [(UserWarning, 'other')]


def test_amp_is_float16_with_loss_scaling_on_cuda_and_bfloat16_on_cpu(monkeypatch):
    from mmengine.config import Config

    from mmdavpt.utils.cli import enable_amp
    for cuda, wrapper in ((True, 'AmpOptimWrapper'), (False, 'CPUAmpOptimWrapper')):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda cuda=cuda: cuda)
        cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD'))))
        enable_amp(cfg)
        assert cfg.optim_wrapper.type == wrapper
        assert cfg.optim_wrapper.get('loss_scale') == ('dynamic' if cuda else None)


def test_test_out_replaces_an_existing_file_and_says_so(tmp_path):
    """MMPretrain's tools/test.py replaces an existing ``--out`` file without a word; ours does
    the same, with a warning naming the file (a user's file is never replaced silently)."""
    root = str(tmp_path / 'data')
    write_shapes_task(root)
    Runner.from_cfg(shapes_task_cfg(root, tmp_path / 'run')).train()
    out = tmp_path / 'predictions.pkl'
    out.write_bytes(b'an earlier file')
    work_dir = str(tmp_path / 'test')
    cfg = merge_test_args(shapes_task_cfg(root, work_dir, name='test'),
                          str(tmp_path / 'run' / 'epoch_1.pth'), work_dir=work_dir)
    run_test(cfg, out=str(out))
    with open(out, 'rb') as f:
        assert len(pickle.load(f)) == 8  # the predictions of the 8 val200 images
    (log, ) = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(log) as f:
        assert f'--out {out} exists: this test replaces it with its predictions' in f.read()
