"""Peak resident memory of this process on Linux, for the memory tools in ``tools/analysis``.

The peak is the kernel's resident-set high-water mark (``VmHWM``), reset to the current resident
memory with :func:`reset_peak_rss` before the measured region; run the measurement in a process
of its own, started with :data:`MALLOC_ENV` in its environment.
"""
import ctypes
import gc
from typing import Dict

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
