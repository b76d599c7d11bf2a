"""mmdavpt's version and the versions of the OpenMMLab stack it works with.

Plain data: ``setup.py`` reads this file without importing the package (for its requirements),
and :mod:`mmdavpt.utils.dependencies` checks the installed versions against it when ``mmdavpt``
is imported, as MMSeg's and MMPretrain's own ``__init__`` do.

Verified here: torch 2.13, mmengine 0.10.7, MMPretrain 1.2.0 and MMSeg 1.2.2, with mmcv 2.1.0
(compiled ops) and, for classification without MMSeg, mmcv-lite 2.2.0 (pure Python).
"""
__version__ = '0.1.0'

#: Import name -> (distribution, minimum version, maximum version (excluded) or None).
#: mmengine: the 0.10 series our compatibility code is written for, below MMEngine 1.0 as
#: MMPretrain and MMSeg require. mmcv (or mmcv-lite, the same ``mmcv`` module without compiled
#: ops): MMPretrain 1.2.0's own limits. MMPretrain and MMSeg: the releases verified here, within
#: their major version.
REQUIREMENTS = {
    'mmengine': ('mmengine', '0.10.0', '1.0.0'),
    'mmcv': ('mmcv', '2.0.0', '2.4.0'),
    'mmpretrain': ('mmpretrain', '1.2.0', '2.0.0'),
    'mmseg': ('mmsegmentation', '1.2.0', '2.0.0'),
}
#: What MMSeg needs of mmcv (its ``__init__`` asserts the range; its heads use compiled ops).
MMSEG_MMCV = ('2.0.0rc4', '2.2.0')


def requirement(module: str, distribution: str = '') -> str:
    """The pip requirement of ``module`` in :data:`REQUIREMENTS`, e.g.
    ``'mmengine>=0.10.0,<1.0.0'`` (``distribution`` replaces its name, e.g. ``'mmcv-lite'``)."""
    name, low, high = REQUIREMENTS[module]
    return f'{distribution or name}>={low}' + (f',<{high}' if high else '')
