"""Writing files without losing any: refuse to overwrite a user's file, replace atomically.

Every checkpoint or converted file the package writes goes through :func:`atomic_write` (or
:func:`atomic_save` for ``torch.save``): the data goes to a temporary file in the destination's
directory, which then replaces the destination with ``os.replace`` (atomic on POSIX and Windows
within one file system). An interrupted or failing write leaves the old file, or none, never a
truncated one. :func:`check_output_path` is what a tool calls before it reads its input.
"""
import os
import os.path as osp
import uuid
from collections.abc import Callable
from typing import Any

import torch


def check_output_path(dst: str | os.PathLike, sources: tuple = (), force: bool = False) -> str:
    """Refuse an output path that is one of the inputs, or that exists without ``force``.

    Paths are compared by ``os.path.realpath``, so a symlink or a relative spelling of an input
    is the input.

    Args:
        dst: the file to be written.
        sources: the files the output is made from (never overwritten, even with ``force``).
        force: allow replacing an existing ``dst`` that is not a source.

    Returns:
        ``dst`` as a string.

    Raises:
        ValueError: ``dst`` is (a link to) one of ``sources``.
        FileExistsError: ``dst`` exists and ``force`` is False.
    """
    dst = os.fspath(dst)
    real = osp.realpath(dst)
    for src in sources:
        if osp.realpath(os.fspath(src)) == real:
            raise ValueError(f'the output {dst} is the input {os.fspath(src)} (both are {real}): '
                             f'writing it would destroy the input; choose another output path')
    if osp.lexists(dst) and not force:
        raise FileExistsError(f'the output {dst} exists; pass --force (force=True) to replace '
                              f'it, or choose another output path')
    return dst


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp)`` on a temporary path next to ``path``, then move it onto ``path``.

    The temporary file is removed if ``write`` raises; ``path`` is then untouched. The parent
    directory is created if needed. A symlink at ``path`` is replaced by the file, its target is
    left as it was.
    """
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.{uuid.uuid4().hex[:12]}.tmp')
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if osp.lexists(tmp):
            os.remove(tmp)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))

