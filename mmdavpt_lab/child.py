"""What a forked process of :func:`mmdavpt_lab.compare.run_process` runs: a module's ``main``, as
``python -m MODULE ARGV`` would, with its output in a log file.

The module is named, not imported here: :mod:`mmdavpt_lab.compare` starts
:mod:`mmdavpt_lab.run` through this function without importing it (``run`` imports
``compare``; the fork server has imported ``run`` already, so the import is free).
"""
import importlib
import os
import sys
import warnings
from typing import List, Optional


def main_in_child(module: str, argv: List[str], log_path: str, threads: Optional[int],
                  cwd: str) -> None:
    """``module.main(argv)`` in ``cwd``, with ``threads`` intra-op threads (``None``: torch's
    default), its output (Python's and the C libraries') appended to ``log_path``, warnings
    off."""
    os.chdir(cwd)
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    warnings.simplefilter('ignore')
    with open(log_path, 'a') as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    sys.stdout = open(1, 'w', buffering=1, closefd=False)
    sys.stderr = open(2, 'w', buffering=1, closefd=False)
    importlib.import_module(module).main(argv)
