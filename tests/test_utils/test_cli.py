"""``mmdavpt.utils.cli``: the process-wide settings the tools ask for."""
import argparse
import warnings

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
