"""Timing with its spread: paired round-robin rounds, ratio intervals and three-way verdicts.

What ``tools/analysis/benchmark.py`` measures with. Every model is called once per *round*, the
order rotating each round (:func:`round_robin`), so that a change of load hits the models of one
round alike. A ratio of two models is the geometric mean of their per-round ratios with a
Student-t interval over the rounds (:func:`paired_ratio_interval`: the paired t interval of
:func:`mmdavpt_lab.compare.paired_t_interval` on the logarithms of the times). A target (an upper
limit of a ratio or of a time) is then ``met`` when the whole interval lies at or below the
limit, ``over`` when it lies above, and otherwise *cannot tell at this noise*
(:func:`verdict`); :func:`rounds_to_resolve` says roughly how many rounds of the same spread
would decide it.

Clocks: :class:`WallCpuClock` (``time.perf_counter`` and the process's CPU time) on a CPU,
:class:`CudaEventClock` (CUDA events around the call, and the host's CPU time) on a GPU; both
take their timers as arguments, so that tests drive them with synthetic clocks.
:func:`spread` keeps one model's times in a :class:`torch.utils.benchmark.Measurement` and reads
its median and interquartile range.
"""
import math
import os
import platform
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from scipy import stats
from torch.utils.benchmark import Measurement
from torch.utils.benchmark.utils.common import TaskSpec

from mmdavpt_lab.compare import mean_std, paired_t_interval

MET = 'met'
OVER = 'over'
CANNOT_TELL = 'cannot tell at this noise'
VERDICTS = (MET, OVER, CANNOT_TELL)

#: :func:`rounds_to_resolve` gives up (returns ``None``) beyond this many rounds.
MAX_ROUNDS = 100_000


# ---------------------------------------------------------------------------------------------
# clocks
class WallCpuClock:
    """Wall time and the CPU time of this process (all its threads) around a call, in seconds.

    The CPU time hardly counts the time the process waits while other jobs run, so on a shared
    machine it is the steadier measure of the work.

    Args:
        wall: the wall-clock timer (seconds).
        cpu: the process CPU-time timer (seconds).
    """

    def __init__(self, wall: Callable[[], float] = time.perf_counter,
                 cpu: Callable[[], float] = time.process_time) -> None:
        self.wall, self.cpu = wall, cpu

    def start(self) -> Tuple[float, float]:
        return self.wall(), self.cpu()

    def stop(self, mark: Tuple[float, float]) -> Tuple[float, float]:
        """(wall seconds, CPU seconds) since :meth:`start` returned ``mark``."""
        return self.wall() - mark[0], self.cpu() - mark[1]


class CudaEventClock:
    """Wall time between two CUDA events recorded on the current stream around a call, and the
    host's CPU time, in seconds.

    :meth:`stop` waits for its end event, so the next :meth:`start` finds the stream drained and
    the interval covers the whole call on the GPU's timeline (kernels, and the gaps where the GPU
    waits for the host). The CPU time is the host's share, waiting for the event included.

    Args:
        event: makes a timing event (``torch.cuda.Event(enable_timing=True)`` by default); an
            event has ``record()``, ``synchronize()`` and ``elapsed_time(end)`` in milliseconds.
        cpu: the process CPU-time timer (seconds).
    """

    def __init__(self, event: Optional[Callable[[], object]] = None,
                 cpu: Callable[[], float] = time.process_time) -> None:
        self.event = event or (lambda: torch.cuda.Event(enable_timing=True))
        self.cpu = cpu

    def start(self) -> Tuple[object, float]:
        begin = self.event()
        begin.record()
        return begin, self.cpu()

    def stop(self, mark: Tuple[object, float]) -> Tuple[float, float]:
        """(wall seconds, CPU seconds) since :meth:`start` returned ``mark``."""
        begin, cpu = mark
        end = self.event()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / 1000, self.cpu() - cpu


def clock_for(device: torch.device):
    """:class:`CudaEventClock` on a CUDA device, :class:`WallCpuClock` elsewhere."""
    return CudaEventClock() if torch.device(device).type == 'cuda' else WallCpuClock()


def round_robin(names: Sequence[str], fns: Dict[str, Callable[[], object]], rounds: int,
                warmup: int, clock,
                check: Optional[Callable[[str, object], None]] = None
                ) -> Tuple[Dict[str, List[float]], Dict[str, List[float]]]:
    """Call every ``fns[name]`` once per round, the order rotating each round.

    Args:
        names: the models, in the order of the first round.
        fns: one call of each model.
        rounds: timed rounds, after ``warmup`` untimed ones.
        clock: :class:`WallCpuClock`, :class:`CudaEventClock` or anything with their
            ``start()`` / ``stop(mark)``.
        check: ``check(name, result)`` after every call, outside the timed window.

    Returns:
        ``(wall, cpu)``: per name, the seconds of each timed round, in round order (so that the
        ``r``-th times of two names are a pair).
    """
    wall: Dict[str, List[float]] = {n: [] for n in names}
    cpu: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in list(names[shift:]) + list(names[:shift]):
            mark = clock.start()
            result = fns[name]()
            elapsed, elapsed_cpu = clock.stop(mark)
            if r >= warmup:
                wall[name].append(elapsed)
                cpu[name].append(elapsed_cpu)
            if check is not None:
                check(name, result)
    return wall, cpu


# ---------------------------------------------------------------------------------------------
# statistics
def _finite(value: float) -> Optional[float]:
    return None if math.isnan(value) else value


def paired_ratio_interval(a: Sequence[float], b: Sequence[float],
                          confidence: float = 0.95) -> dict:
    """The ratio ``a / b`` of two paired series and its confidence interval.

    Args:
        a, b: positive times (or any positive measure) of two models, ``a[r]`` and ``b[r]``
            from the same round.
        confidence: two-sided coverage of the interval.

    Returns:
        ``dict(ratio, low, high, n, log_std, confidence)``: ``ratio`` is the geometric mean of
        the per-round ratios ``a[r] / b[r]``, ``[low, high]`` its Student-t interval over the
        rounds (:func:`mmdavpt_lab.compare.paired_t_interval` of the logarithms,
        exponentiated), ``log_std`` the sample standard deviation of the log ratios. ``low``,
        ``high`` and ``log_std`` are ``None`` for a single round.

    Raises:
        ValueError: the series differ in length, are empty, or hold a value <= 0.
    """
    if any(v <= 0 for v in list(a) + list(b)):
        raise ValueError('paired_ratio_interval needs positive values')
    log_a, log_b = [math.log(v) for v in a], [math.log(v) for v in b]
    diff = paired_t_interval(log_a, log_b, confidence)
    log_std = mean_std([x - y for x, y in zip(log_a, log_b)])[1]
    return dict(ratio=math.exp(diff['mean']), low=_finite(math.exp(diff['low'])),
                high=_finite(math.exp(diff['high'])), n=diff['n'], log_std=_finite(log_std),
                confidence=confidence)


def geometric_mean_interval(values: Sequence[float], confidence: float = 0.95) -> dict:
    """The geometric mean of positive values (e.g. repeated times of one call) and its Student-t
    interval, in the form of :func:`paired_ratio_interval` (``ratio`` is the mean)."""
    return paired_ratio_interval(values, [1.0] * len(values), confidence)


def verdict(interval: dict, limit: float) -> str:
    """:data:`MET` when the whole interval lies at or below ``limit``, :data:`OVER` when it lies
    above, :data:`CANNOT_TELL` otherwise (or without an interval)."""
    if interval['low'] is None or interval['high'] is None:
        return CANNOT_TELL
    if interval['high'] <= limit:
        return MET
    if interval['low'] > limit:
        return OVER
    return CANNOT_TELL


def rounds_to_resolve(interval: dict, limit: float) -> Optional[int]:
    """Roughly how many rounds would decide the verdict: the fewest rounds whose interval, with
    the same geometric mean ratio and the same spread of the log ratios, no longer contains
    ``limit``. (The next rounds will not keep the same mean and spread exactly: a rough guide.)

    Returns:
        The number of rounds; ``None`` without a spread (one round), when the ratio equals the
        limit, or beyond :data:`MAX_ROUNDS`.
    """
    std = interval['log_std']
    if std is None:
        return None
    distance = abs(math.log(interval['ratio']) - math.log(limit))
    if distance == 0:
        return None
    if std == 0:
        return 2
    q = 0.5 + interval['confidence'] / 2

    def resolves(n: int) -> bool:
        return float(stats.t.ppf(q, n - 1)) * std / math.sqrt(n) < distance

    # the normal approximation, then the t quantile upwards (it only lowers the bound)
    n = max(2, math.ceil((float(stats.norm.ppf(q)) * std / distance) ** 2))
    while not resolves(n):
        n += 1
        if n > MAX_ROUNDS:
            return None
    while n > 2 and resolves(n - 1):
        n -= 1
    return n


def check_target(interval: dict, limit: float) -> dict:
    """The interval with its limit, :func:`verdict` and (when undecided)
    :func:`rounds_to_resolve`."""
    decided = verdict(interval, limit)
    return dict(interval, limit=limit, verdict=decided,
                rounds_to_resolve=None if decided != CANNOT_TELL else rounds_to_resolve(
                    interval, limit))


def format_interval(interval: Optional[dict], digits: int = 3) -> str:
    """``'1.003 [0.995, 1.011]'``; ``'1.003 [no interval]'`` for one round, ``'-'`` for none."""
    if interval is None:
        return '-'
    value = f"{interval['ratio']:.{digits}f}"
    if interval['low'] is None:
        return f'{value} [no interval]'
    return f"{value} [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"


def spread(times: Sequence[float], label: str, num_threads: int) -> dict:
    """One model's times through :class:`torch.utils.benchmark.Measurement`: ``dict(median_s,
    mean_s, iqr_s, iqr_over_median, n)``, seconds."""
    m = Measurement(number_per_run=1, raw_times=list(times),
                    task_spec=TaskSpec(stmt=label, setup='', label=label,
                                       num_threads=num_threads))
    return dict(median_s=m.median, mean_s=m.mean, iqr_s=m.iqr,
                iqr_over_median=m.iqr / m.median, n=len(times))


# ---------------------------------------------------------------------------------------------
# the machine
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else :func:`platform.processor`."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_state(device: torch.device) -> dict:
    """What the figures depend on besides the code: CPU model and cores, torch and its threads,
    Python, the platform, and on CUDA the GPU and its fp32 matmul settings. The load average
    is recorded by the caller before and after the measurement (``os.getloadavg()``)."""
    info = dict(cpu_model=cpu_model(), cpu_count=os.cpu_count(), torch=torch.__version__,
                torch_threads=torch.get_num_threads(),
                torch_interop_threads=torch.get_num_interop_threads(),
                python=platform.python_version(), platform=platform.platform())
    if torch.device(device).type == 'cuda':
        # fp32 timings depend on whether matmuls may use TF32 (torch's default: they may not)
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(),
                    float32_matmul_precision=torch.get_float32_matmul_precision(),
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32)
    return info
