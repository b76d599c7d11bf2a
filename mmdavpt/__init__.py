"""mmdavpt: DA-VPT (Distribution-Aware Visual Prompt Tuning, CVPR 2025) for MMSeg and MMPretrain.

Importing the package registers its models, losses, hooks and datasets in MMPretrain's and MMSeg's
registries (``custom_imports=dict(imports=['mmdavpt'], allow_failed_imports=False)`` in a config)
and makes one change to another library: ``torch.load``'s safe mode (``weights_only=True``) also
accepts the few non-tensor types that mmengine writes into its checkpoints
(:func:`mmdavpt.utils.compat.register_mmengine_safe_globals`; docs/architecture.md, "Import-time
changes").

It first checks the versions of mmengine, mmcv (or mmcv-lite) and MMPretrain, saying what to
install; MMSeg is optional (``mmdavpt[seg]``): without it only the classification modules are
registered (``mmdavpt.utils.dependencies``).
"""
from .utils.dependencies import check_versions
from .version import __version__  # noqa: F401

check_versions()

from .utils.compat import register_mmengine_safe_globals  # noqa: E402

register_mmengine_safe_globals()

from . import datasets, engine, models  # noqa: E402,F401  (registration)
