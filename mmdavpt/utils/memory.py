"""Peak resident memory of this process on Linux, for the memory tools in ``tools/analysis``.

The peak is the kernel's resident-set high-water mark (``VmHWM``), reset to the current resident
memory with :func:`reset_peak_rss` before the measured region; run the measurement in a process
of its own, started with :data:`MALLOC_ENV` in its environment: :func:`measuring_pool`.
"""
import ctypes
import gc
import multiprocessing as mp
import os
from contextlib import contextmanager
from multiprocessing.pool import Pool
from typing import Dict, Iterator, Sequence

#: The environment of a measuring process. A fixed mmap threshold makes glibc map every block
#: over 64 KiB on its own and unmap it when freed, so that the resident memory follows the live
#: tensors as CUDA's allocated memory does; with glibc's default (a threshold that grows up to
#: 32 MiB) freed tensors stay in the heap and the peak moves by +-3 % from run to run. glibc reads
#: it at start-up only.
MALLOC_ENV = {'MALLOC_MMAP_THRESHOLD_': str(64 * 1024)}


def rss_kib() -> Dict[str, int]:
    """The resident memory (``VmRSS``) and its high-water mark (``VmHWM``) of this process, in
    KiB, from ``/proc/self/status``."""
    with open('/proc/self/status') as f:
        status = dict(line.split(':', 1) for line in f)
    return {k: int(status[k].split()[0]) for k in ('VmRSS', 'VmHWM')}


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` of this process to its current RSS; False where Linux refuses (no
    ``/proc/self/clear_refs``, or not writable)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def release_free_heap() -> None:
    """Collect garbage and return glibc's free heap pages to the system (no-op without glibc)."""
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextmanager
def measuring_pool(preload: Sequence[str] = ('torch', 'mmdavpt')) -> Iterator[Pool]:
    """A pool whose every task runs in a fresh process started with :data:`MALLOC_ENV` in its
    environment: ``pool.apply(fn, args)`` returns ``fn(*args)`` computed there.

    The processes come from a fork server that imported ``preload`` once (CUDA-safe: the server
    never touches the GPU), so a task does not pay the imports again. ``fn`` must be importable
    by name (a module's function, or one of the running script's). The fork server starts with
    the first pool of a process, with the environment of that moment (and this process's
    :data:`MALLOC_ENV` left as it was).
    """
    ctx = mp.get_context('forkserver')
    ctx.set_forkserver_preload(list(preload))
    saved = {k: os.environ.get(k) for k in MALLOC_ENV}
    os.environ.update(MALLOC_ENV)  # only the server, and so the tasks' processes, start with it
    try:
        pool = ctx.Pool(1, maxtasksperchild=1)
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    with pool:
        yield pool
