"""The installed OpenMMLab stack, checked when ``mmdavpt`` is imported (as MMSeg's and
MMPretrain's own ``__init__`` check theirs), and whether segmentation can be used.

Classification needs mmengine, mmcv (the full package or ``mmcv-lite``, the same ``mmcv`` module
without compiled ops) and MMPretrain. Segmentation also needs MMSeg, which needs an mmcv with its
compiled ops in its own version range. Without a usable MMSeg, ``mmdavpt`` registers its
classification modules only; when MMSeg is installed but cannot be used, importing ``mmdavpt``
warns once, saying why.
"""
import importlib
import importlib.util
import warnings
from functools import cache
from importlib import metadata
from typing import Optional

from mmengine.utils import digit_version

from mmdavpt.version import MMSEG_MMCV, REQUIREMENTS, requirement

#: How to get an mmcv: which one depends on the task and on torch/CUDA.
MMCV_HINT = ("install mmcv-lite for classification (pip install 'mmdavpt[lite]', pure Python), "
             'or mmcv with its compiled ops, which segmentation needs (pip install -U openmim '
             f"&& mim install 'mmcv>={MMSEG_MMCV[0]},<{MMSEG_MMCV[1]}'; MIM picks the wheel "
             'built for your torch and CUDA, else builds it from source)')


def _in_range(version: str, low: str, high: Optional[str]) -> bool:
    v = digit_version(version)
    return digit_version(low) <= v and (high is None or v < digit_version(high))


def _dist_version(distribution: str) -> Optional[str]:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def mmcv_version() -> Optional[str]:
    """The installed ``mmcv`` module's version (from mmcv or mmcv-lite), None if none."""
    if importlib.util.find_spec('mmcv') is None:
        return None
    return importlib.import_module('mmcv').__version__


def mmcv_has_ops() -> bool:
    """Whether the installed mmcv has its compiled ops (``mmcv._ext``; mmcv-lite has none)."""
    return importlib.util.find_spec('mmcv') is not None and \
        importlib.util.find_spec('mmcv._ext') is not None


def check_versions() -> None:
    """Check mmengine, mmcv and MMPretrain against :data:`mmdavpt.version.REQUIREMENTS`, and
    warn if MMSeg is installed but cannot be used (:func:`mmseg_unusable_reason`).

    Raises:
        ImportError: one of them is missing or outside its range, saying what to install.
    """
    for module in ('mmengine', 'mmpretrain'):
        name, low, high = REQUIREMENTS[module]
        version = _dist_version(name)
        if version is None or not _in_range(version, low, high):
            found = 'is not installed' if version is None else f'{version} is installed'
            raise ImportError(f"mmdavpt needs {requirement(module)}, but {name} {found}: "
                              f"pip install '{requirement(module)}'")
    version = mmcv_version()
    if version is None:
        raise ImportError(f'mmdavpt needs mmcv (MMPretrain imports it), and none is installed: '
                          f'{MMCV_HINT}')
    _, low, high = REQUIREMENTS['mmcv']
    if not _in_range(version, low, high):
        raise ImportError(f'mmdavpt needs mmcv>={low},<{high} (MMPretrain\'s range), but mmcv '
                          f'{version} is installed: {MMCV_HINT}')
    reason = mmseg_unusable_reason()
    if reason is not None and importlib.util.find_spec('mmseg') is not None:
        warnings.warn(f'mmdavpt: segmentation is off: {reason}', stacklevel=2)


@cache
def mmseg_unusable_reason() -> Optional[str]:
    """Why MMSeg cannot be used here, or None if it can (installed, in its version range, with an
    mmcv in MMSeg's range that has its compiled ops). Never imports MMSeg, whose ``__init__``
    asserts on an mmcv outside its range."""
    install = ("pip install 'mmdavpt[seg]' with an mmcv that has its compiled ops "
               f"(mim install 'mmcv>={MMSEG_MMCV[0]},<{MMSEG_MMCV[1]}')")
    name, low, high = REQUIREMENTS['mmseg']
    version = _dist_version(name)
    if version is None or importlib.util.find_spec('mmseg') is None:
        return f'MMSeg is not installed ({install})'
    if not _in_range(version, low, high):
        return f'mmdavpt needs {requirement("mmseg")}, but {name} {version} is installed'
    mmcv = mmcv_version()
    if mmcv is None or not _in_range(mmcv, *MMSEG_MMCV):
        return (f'MMSeg {version} needs mmcv>={MMSEG_MMCV[0]},<{MMSEG_MMCV[1]}, but mmcv {mmcv} '
                f'is installed ({install})')
    if not mmcv_has_ops():
        return (f'MMSeg needs the compiled ops of mmcv, which the installed mmcv {mmcv} does not '
                f'have (mmcv-lite?); uninstall it and {install}')
    return None


def mmseg_available() -> bool:
    """Whether MMSeg can be used, so that mmdavpt registers its segmentation modules."""
    return mmseg_unusable_reason() is None


def require_mmseg(what: str) -> None:
    """Raise ``ImportError`` naming ``what`` needs MMSeg and why it cannot be used, if so."""
    reason = mmseg_unusable_reason()
    if reason is not None:
        raise ImportError(f'{what} needs MMSeg: {reason}')
