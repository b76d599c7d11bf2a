"""mmdavpt_lab.timing: ratio intervals, verdicts and round estimates on synthetic timing series
with a known spread, and the clocks driven by synthetic timers (nothing here is timed)."""
import math

import pytest
from scipy import stats

from mmdavpt_lab.timing import (
    CANNOT_TELL,
    MET,
    OVER,
    VERDICTS,
    CudaEventClock,
    WallCpuClock,
    check_target,
    format_interval,
    geometric_mean_interval,
    machine_state,
    paired_ratio_interval,
    round_robin,
    rounds_to_resolve,
    spread,
    verdict,
)

from conftest import exact_series, paired_times


def test_paired_interval_is_the_t_interval_of_the_log_ratios_whatever_the_load():
    model, base = paired_times(1.02, 0.05, 10)
    got = paired_ratio_interval(model, base)
    half = stats.t.ppf(0.975, 9) * 0.05 / math.sqrt(10)
    assert got['ratio'] == pytest.approx(1.02)
    assert got['low'] == pytest.approx(1.02 * math.exp(-half))
    assert got['high'] == pytest.approx(1.02 * math.exp(half))
    assert got['log_std'] == pytest.approx(0.05)
    assert got['n'] == 10 and got['confidence'] == 0.95
    # the times themselves swing 4x with the load; the pairing removes it
    assert max(base) / min(base) > 3
    assert paired_ratio_interval(model, base, confidence=0.5)['high'] < got['high']


@pytest.mark.parametrize('ratio, log_std, expected', [
    (1.00, 0.01, MET),          # [0.992, 1.008] below 1.03
    (1.10, 0.01, OVER),         # [1.092, 1.108] above 1.03
    (1.02, 0.05, CANNOT_TELL),  # [0.983, 1.059] holds 1.03
])
def test_the_three_verdicts(ratio, log_std, expected):
    interval = paired_ratio_interval(*paired_times(ratio, log_std, 10))
    assert verdict(interval, 1.03) == expected
    checked = check_target(interval, 1.03)
    assert checked['verdict'] == expected and checked['limit'] == 1.03
    assert checked['ratio'] == interval['ratio']
    # only an undecided target says how many rounds would decide it
    assert (checked['rounds_to_resolve'] is None) == (expected != CANNOT_TELL)


@pytest.mark.parametrize('ratio, resolves_to', [(1.02, MET), (1.04, OVER)])
def test_rounds_to_resolve_is_the_fewest_rounds_of_the_same_spread_that_decide(ratio,
                                                                               resolves_to):
    limit, log_std = 1.03, 0.05
    interval = paired_ratio_interval(*paired_times(ratio, log_std, 10))
    assert verdict(interval, limit) == CANNOT_TELL
    needed = rounds_to_resolve(interval, limit)
    # roughly (1.96 * std / |log(ratio / limit)|)^2: 101 -> 104 rounds for 1.02, 103 -> 106 for 1.04
    normal = (1.96 * log_std / abs(math.log(ratio / limit))) ** 2
    assert normal < needed < normal + 5
    # a series of that many rounds with the same mean and spread decides; one round fewer not
    assert verdict(paired_ratio_interval(*paired_times(ratio, log_std, needed)),
                   limit) == resolves_to
    assert verdict(paired_ratio_interval(*paired_times(ratio, log_std, needed - 1)),
                   limit) == CANNOT_TELL
    assert check_target(interval, limit)['rounds_to_resolve'] == needed


def test_no_interval_no_verdict_and_no_estimate_without_a_spread_or_a_distance():
    one = paired_ratio_interval([3.1], [3.0])
    assert one['low'] is None and one['high'] is None and one['log_std'] is None
    assert verdict(one, 1.5) == CANNOT_TELL and rounds_to_resolve(one, 1.5) is None
    assert format_interval(one) == '1.033 [no interval]'
    at_limit = paired_ratio_interval(*paired_times(1.03, 0.05, 10))
    assert verdict(at_limit, 1.03) == CANNOT_TELL and rounds_to_resolve(at_limit, 1.03) is None
    same = paired_ratio_interval([2.0, 3.0, 4.0], [2.0, 3.0, 4.0])
    assert (same['ratio'], same['low'], same['high']) == (1.0, 1.0, 1.0)
    assert verdict(same, 1.02) == MET
    assert format_interval(same) == '1.000 [1.000, 1.000]' and format_interval(None) == '-'
    with pytest.raises(ValueError, match='positive'):
        paired_ratio_interval([1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match='equally long'):
        paired_ratio_interval([1.0, 2.0], [1.0])
    assert set(VERDICTS) == {MET, OVER, CANNOT_TELL}


def test_geometric_mean_interval_of_repeated_times():
    times = [math.exp(v) for v in exact_series(math.log(0.05), 0.2, 3)]
    got = geometric_mean_interval(times)
    half = stats.t.ppf(0.975, 2) * 0.2 / math.sqrt(3)
    assert got['ratio'] == pytest.approx(0.05)
    assert got['high'] == pytest.approx(0.05 * math.exp(half))
    assert verdict(got, 0.5) == MET


class FakeGPU:
    """A GPU timeline in milliseconds and a host CPU clock in seconds, both advanced by the
    fake calls; its events behave as ``torch.cuda.Event(enable_timing=True)``."""

    def __init__(self) -> None:
        self.now_ms, self.cpu_s, self.synchronized = 0.0, 0.0, 0

    def event(self):
        gpu = self

        class Event:
            def record(self) -> None:
                self.t = gpu.now_ms

            def synchronize(self) -> None:
                gpu.synchronized += 1

            def elapsed_time(self, end) -> float:
                return end.t - self.t

        return Event()

    def work(self, name: str, gpu_ms: float, cpu_s: float, calls: list):
        def fn():
            calls.append(name)
            self.now_ms += gpu_ms
            self.cpu_s += cpu_s
            return name
        return fn


def test_round_robin_with_cuda_events_rotates_drops_the_warmup_and_times_each_call():
    gpu, calls, checked = FakeGPU(), [], []
    clock = CudaEventClock(event=gpu.event, cpu=lambda: gpu.cpu_s)
    fns = {'a': gpu.work('a', 30.0, 0.002, calls), 'b': gpu.work('b', 45.0, 0.003, calls),
           'c': gpu.work('c', 60.0, 0.001, calls)}
    wall, cpu = round_robin(['a', 'b', 'c'], fns, rounds=3, warmup=1, clock=clock,
                            check=lambda name, result: checked.append((name, result)))
    assert calls == ['a', 'b', 'c', 'b', 'c', 'a', 'c', 'a', 'b', 'a', 'b', 'c']
    assert checked == [(n, n) for n in calls]
    assert wall == {'a': [pytest.approx(0.030)] * 3, 'b': [pytest.approx(0.045)] * 3,
                    'c': [pytest.approx(0.060)] * 3}
    assert cpu == {'a': [pytest.approx(0.002)] * 3, 'b': [pytest.approx(0.003)] * 3,
                   'c': [pytest.approx(0.001)] * 3}
    assert gpu.synchronized == len(calls)  # every stop waits for its end event


def test_wall_cpu_clock_reads_its_timers():
    wall_now, cpu_now = [10.0], [1.0]
    clock = WallCpuClock(wall=lambda: wall_now[0], cpu=lambda: cpu_now[0])
    mark = clock.start()
    wall_now[0], cpu_now[0] = 12.5, 1.75
    assert clock.stop(mark) == (2.5, 0.75)


def test_spread_reads_the_measurement():
    got = spread([0.5, 0.1, 0.2, 0.4, 0.3], 'vpt_deep', num_threads=2)
    assert got['median_s'] == pytest.approx(0.3) and got['mean_s'] == pytest.approx(0.3)
    assert got['iqr_s'] == pytest.approx(0.2) and got['iqr_over_median'] == pytest.approx(2 / 3)
    assert got['n'] == 5


def test_machine_state_names_the_cpu_and_torch():
    state = machine_state('cpu')
    assert state['cpu_model'] and state['torch'] and state['torch_threads'] >= 1
    assert state['cpu_count'] >= 1 and 'gpu' not in state
