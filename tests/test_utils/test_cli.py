"""``mmdavpt.utils.cli``: the process-wide settings the tools ask for, and ``--amp`` on either
device."""
import argparse
import warnings

import torch

from mmdavpt.utils.cli import (
    PKG_RESOURCES_WARNING,
    add_common_args,
    ignore_pkg_resources_warning,
    parse_common_args,
)


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
