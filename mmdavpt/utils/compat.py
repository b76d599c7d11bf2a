"""Compatibility of the MM 1.x stack (mmengine 0.10.7) with recent PyTorch.

Three gaps are closed here:

* ``torch.load`` defaults to ``weights_only=True`` since PyTorch 2.6, and every checkpoint an
  mmengine ``Runner`` writes holds more than tensors: the message hub's ``HistoryBuffer`` logs
  (numpy arrays, plus the buffer's statistics methods pickled as ``getattr(HistoryBuffer, 'min')``),
  numpy scalars (metrics, best scores) and sometimes a ``ConfigDict``. mmengine calls ``torch.load``
  without ``weights_only``, so ``load_from``, ``resume=True`` and
  ``init_cfg=dict(type='Pretrained', ...)`` all fail on such files.
  :func:`register_mmengine_safe_globals` allowlists exactly those types with
  ``torch.serialization.add_safe_globals``; loading stays ``weights_only=True`` (no arbitrary code
  runs). Importing ``mmdavpt`` calls it (docs/architecture.md, "Import-time changes"): a config
  that imports the package through ``custom_imports`` must be able to resume, whichever tool
  runs it.
* A file that is not a PyTorch checkpoint at all (random bytes, an HTML error page saved as
  ``.pth``, a truncated download) makes ``torch.load`` fail with a message that suggests
  ``weights_only=False``, i.e. running the file's pickle unrestricted.
  :func:`load_from_local_checked` says that the file is not a checkpoint instead. The converters
  and ``DAVPTViT``'s pre-trained weights read local files through it
  (:func:`mmdavpt.utils.ckpt_convert.read_checkpoint`); :func:`register_checkpoint_loader` makes
  it MMEngine's loader of local paths (``load_from``, ``resume``, any module's
  ``init_cfg=dict(type='Pretrained')``) for a process that asks for it, as the tools do
  (:func:`mmdavpt.utils.cli.build_runner`).
* mmengine's ``AmpOptimWrapper`` asserts that a GPU (or NPU/MLU/MUSA) is present. On a CPU-only
  machine :class:`CPUAmpOptimWrapper` gives ``--amp`` its CPU meaning: bfloat16 autocast, no loss
  scaling (bfloat16 has the float32 exponent range).
"""
import os
import os.path as osp
import pickle
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.logging import HistoryBuffer
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner import CheckpointLoader
from mmengine.runner.amp import autocast
from mmengine.runner.checkpoint import load_from_local
from torch import nn

try:  # numpy >= 1.26; numpy 2 deprecates the numpy.core path
    from numpy._core import multiarray
except ImportError:
    from numpy.core import multiarray

# The methods ``HistoryBuffer.__getstate__`` pickles by reference (its default statistics).
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` while ``torch.load(weights_only=True)`` unpickles.

    Pickle protocol 2 (the one ``torch.save`` uses) stores ``HistoryBuffer.min`` as
    ``getattr(HistoryBuffer, 'min')``. Allowlisting the real ``getattr`` would let a checkpoint
    reach any attribute of any allowlisted object, so this one resolves only those four methods.
    """
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'weights_only load: getattr({obj!r}, {name!r}) is not allowed; only the statistics '
        f'methods {_HISTORY_BUFFER_STATISTICS} of mmengine HistoryBuffer are')


def mmengine_safe_globals() -> list[tuple[Any, str]]:
    """The ``(object, 'module.qualname')`` pairs an mmengine checkpoint references.

    Found by listing ``torch.serialization.get_unsafe_globals_in_checkpoint`` of real Runner
    checkpoints (``tests/test_foundation.py`` keeps that list honest). Numpy objects are listed
    under both their numpy 1.x (``numpy.core``) and 2.x (``numpy._core``) pickle paths.
    """
    pairs = [(HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
             (ConfigDict, 'mmengine.config.config.ConfigDict'),
             (_history_buffer_getattr, 'builtins.getattr'),
             (np.ndarray, 'numpy.ndarray'),
             (np.dtype, 'numpy.dtype')]
    for core in ('numpy.core', 'numpy._core'):
        pairs += [(multiarray._reconstruct, f'{core}.multiarray._reconstruct'),
                  (multiarray.scalar, f'{core}.multiarray.scalar')]
    # ``np.dtype(...)`` returns an instance of a per-kind class (numpy >= 1.25) that the unpickler
    # then restores with BUILD, which torch allows only for allowlisted types.
    for code in np.typecodes['All']:
        dtype_cls = type(np.dtype(code))
        pairs.append((dtype_cls, f'{dtype_cls.__module__}.{dtype_cls.__qualname__}'))
    return pairs


def register_mmengine_safe_globals() -> None:
    """Let ``torch.load(weights_only=True)`` read checkpoints written by mmengine.

    Idempotent. A no-op on PyTorch < 2.4, which has no allowlist (and loads unrestricted by
    default). Checkpoints from other sources that pickle further objects still fail with
    PyTorch's own message naming the object; allowlist it with
    ``torch.serialization.add_safe_globals`` if you trust the file.
    """
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(mmengine_safe_globals())


class NotACheckpointError(ValueError):
    """A file given as a checkpoint is not one that ``torch.load`` can read."""


# ``torch.save`` writes a zip archive (PyTorch >= 1.6) or, with
# ``_use_new_zipfile_serialization=False``, pickle protocol 2 (``\x80\x02``) starting with its
# magic number.
_LEGACY_TORCH_HEAD = b'\x80\x02'


def _is_torch_file(path: str) -> bool:
    with open(path, 'rb') as f:
        head = f.read(2)
    return head == _LEGACY_TORCH_HEAD or zipfile.is_zipfile(path)


def load_from_local_checked(filename: str, map_location: Any = None) -> Any:
    """MMEngine's ``load_from_local`` (``torch.load``, safe mode), with a clear error when
    ``filename`` is not a PyTorch checkpoint.

    Raises:
        FileNotFoundError: no such file (MMEngine's message).
        NotACheckpointError: the file is empty, or neither a complete ``torch.save`` zip archive
            nor a legacy ``torch.save`` pickle. Other load errors (e.g. an object outside the
            safe-mode allowlist in a real checkpoint) are PyTorch's own.
    """
    try:
        return load_from_local(filename, map_location)
    except FileNotFoundError:
        raise
    except Exception:
        path = osp.expanduser(filename)
        if _is_torch_file(path):
            raise
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(16)
    raise NotACheckpointError(
        f'{filename} is not a PyTorch checkpoint ({size} bytes, starting with {head!r}): '
        f'neither a complete torch.save zip archive nor a legacy torch.save file. It may be '
        f'truncated (an interrupted download or copy), another format, or the wrong path; '
        f'download or convert it again (tools/model_converters/).') from None


def register_checkpoint_loader() -> None:
    """Make :func:`load_from_local_checked` MMEngine's ``CheckpointLoader`` for local paths (the
    ``''`` scheme; ``http://``, ``s3://`` etc. keep theirs) in this process. Idempotent. The
    tools ask for it (:func:`mmdavpt.utils.cli.build_runner`); importing ``mmdavpt`` does
    not."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_checked, force=True)


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """Mixed-precision training on CPU: forward and loss under bfloat16 autocast.

    Same interface and state dict as :class:`mmengine.optim.OptimWrapper`; ``tools/train.py
    --amp`` selects it when CUDA is not available (mmengine's ``AmpOptimWrapper`` refuses CPU).
    """

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), autocast(device_type='cpu', dtype=torch.bfloat16):
            yield
