"""mmdavpt.analysis.compare: statistics, result reading and schedule overrides on tiny inputs."""
import json
import math
import os

import pytest
from mmengine.config import Config
from scipy import stats

from mmdavpt.analysis.compare import (
    RESULT_FILE,
    format_summary,
    mean_std,
    paired_t_interval,
    plot_runs,
    read_test_metrics,
    run_one,
    run_options,
    schedule_options,
    seconds_per_step,
    summarize,
)


def test_paired_t_interval_by_hand_and_scipy():
    a, b = [46.0, 44.0, 45.0], [40.0, 41.0, 39.0]  # differences 6, 3, 6: mean 5, std sqrt(3)
    got = paired_t_interval(a, b)
    half = 4.302652729911275 * math.sqrt(3) / math.sqrt(3)  # t_{0.975, 2} x std / sqrt(n)
    assert got['mean'] == pytest.approx(5.0)
    assert got['low'] == pytest.approx(5.0 - half) and got['high'] == pytest.approx(5.0 + half)
    low, high = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (got['low'], got['high']) == pytest.approx((low, high))
    assert got['n'] == 3


def test_paired_t_interval_one_pair_and_bad_input():
    one = paired_t_interval([2.0], [1.0])
    assert one['mean'] == 1.0 and math.isnan(one['low']) and math.isnan(one['high'])
    with pytest.raises(ValueError, match='equally long'):
        paired_t_interval([1.0, 2.0], [1.0])


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert math.isnan(mean_std([4.0])[1])


def _runs():
    runs = []
    for seed, (base, new) in enumerate([(40.0, 42.0), (41.0, 44.0), (39.0, 40.0)]):
        runs.append(dict(method='VPT', seed=seed, metrics=dict(ss=base, tta=base + 5),
                         tunable_params=1000, seconds_per_step=0.5))
        runs.append(dict(method='DA-VPT', seed=seed, metrics=dict(ss=new, tta=new + 4),
                         tunable_params=1000, seconds_per_step=0.7))
    return runs


def test_summarize_pairs_by_seed():
    summary = summarize(_runs()[:-1], ['ss', 'tta'], baseline='VPT')  # DA-VPT seed 2 missing
    assert list(summary) == ['VPT', 'DA-VPT']
    assert summary['VPT']['ss']['mean'] == pytest.approx(40.0)
    assert 'diff' not in summary['VPT']['ss']
    diff = summary['DA-VPT']['ss']['diff']
    assert diff['n'] == 2 and diff['mean'] == pytest.approx(2.5)  # seeds 0 and 1: +2, +3
    assert summary['DA-VPT']['tta']['diff']['mean'] == pytest.approx(1.5)
    assert summary['DA-VPT']['tunable_params'] == 1000
    assert summary['DA-VPT']['seconds_per_step'] == pytest.approx(0.7)
    table = format_summary(summary, ['ss'], {'ss': 'mIoU'}, baseline='VPT')
    assert '| DA-VPT | 0,1 | 43.00 ± 1.41 | +2.50 [' in table
    with pytest.raises(ValueError, match="baseline 'Full'"):
        summarize(_runs(), ['ss'], baseline='Full')


def _write_run(work_dir, stamp, test=None, scalars=None):
    run = os.path.join(work_dir, stamp)
    os.makedirs(os.path.join(run, 'vis_data'))
    if test is not None:
        with open(os.path.join(run, f'{stamp}.json'), 'w') as f:
            f.write(json.dumps(test) + '\n')
    if scalars is not None:
        with open(os.path.join(run, 'vis_data', 'scalars.json'), 'w') as f:
            f.write(''.join(json.dumps(r) + '\n' for r in scalars))


def test_read_test_metrics_takes_the_latest_test(tmp_path):
    with pytest.raises(FileNotFoundError, match='no test metrics'):
        read_test_metrics(str(tmp_path))
    _write_run(str(tmp_path), '20260101_000000', test={'mIoU': 30.0})
    _write_run(str(tmp_path), '20260102_000000', test={'mIoU': 31.5, 'aAcc': 90.0})
    _write_run(str(tmp_path), '20260103_000000')  # a later run without a test
    assert read_test_metrics(str(tmp_path))['mIoU'] == 31.5


def test_seconds_per_step_skips_the_first_window(tmp_path):
    assert seconds_per_step(str(tmp_path)) is None
    _write_run(str(tmp_path), '20260101_000000', scalars=[
        dict(loss=1.0, time=3.0, step=25), dict(loss=0.9, time=0.5, step=50),
        dict(loss=0.8, time=0.7, step=75), dict(mIoU=30.0, step=75)])
    assert seconds_per_step(str(tmp_path)) == pytest.approx(0.6)


def test_schedule_options():
    cfg = Config(dict(train_cfg=dict(type='IterBasedTrainLoop', max_iters=600),
                      param_scheduler=[dict(type='LinearLR', begin=0, end=20),
                                       dict(type='PolyLR', begin=20, end=600)]))
    assert schedule_options(cfg, 300) == ['train_cfg.max_iters=300', 'param_scheduler.1.end=300']
    assert schedule_options(cfg, 10) == ['train_cfg.max_iters=10', 'param_scheduler.0.end=10',
                                         'param_scheduler.1.end=10']
    with pytest.raises(ValueError, match='trains by epochs'):
        schedule_options(Config(dict(train_cfg=dict(max_epochs=3))), 10)


def test_plot_runs_writes_a_png(tmp_path):
    path = str(tmp_path / 'runs.png')
    assert plot_runs(_runs(), ['ss', 'tta'], path) is None
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


DEMO = 'configs/segmentation/demo/setr_pup_davpt_vit-s14_1xb8-600it_animal-mnist-seg-112x112.py'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_run_options_seed_the_mapping_and_shorten_the_schedule():
    options, cfg = run_options(DEMO, ['model.guidance.ignore_classes=(0,)'], 3, 300)
    assert options[:3] == ['model.guidance.ignore_classes=(0,)', 'randomness.seed=3',
                           'model.guidance.mapping.seed=3']
    assert cfg.model.guidance.ignore_classes == (0, ) and cfg.randomness.seed == 3
    assert cfg.train_cfg.max_iters == 300 and cfg.param_scheduler[1].end == 300
    assert cfg.val_cfg is None
    options, cfg = run_options(DEMO, ['model.guidance=None'], 1)
    assert not any('mapping.seed' in o for o in options)


def test_finished_run_is_read_back_not_rerun(tmp_path):
    options, _ = run_options(DEMO, [], 0, 10)
    run_dir = tmp_path / 'DA-VPT' / 'seed0'
    run_dir.mkdir(parents=True)
    done = dict(method='DA-VPT', seed=0, config=DEMO, cfg_options=options, metric='mIoU',
                metrics=dict(ss=40.0))
    (run_dir / RESULT_FILE).write_text(json.dumps(done))
    assert run_one('DA-VPT', DEMO, [], 0, str(tmp_path), ROOT, iters=10) == done
    with pytest.raises(ValueError, match='use another work dir'):
        run_one('DA-VPT', DEMO, [], 0, str(tmp_path), ROOT, iters=20)
    (run_dir / RESULT_FILE).write_text(json.dumps(dict(done, config_digest='0' * 40)))
    with pytest.raises(ValueError, match='the config file changed'):
        run_one('DA-VPT', DEMO, [], 0, str(tmp_path), ROOT, iters=10)
