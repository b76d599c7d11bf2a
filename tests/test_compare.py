"""mmdavpt_lab.compare: statistics, result reading and schedule overrides on tiny inputs."""
import json
import math
import os
import re
import subprocess
import sys

import pytest
from mmengine.config import Config
from scipy import stats

from mmdavpt.utils.workdir import find_config
from mmdavpt_lab.compare import (
    RESULT_FILE,
    TRAINED_FILE,
    attention_shares,
    best_checkpoint,
    config_digest,
    format_summary,
    mean_std,
    paired_t_interval,
    plot_runs,
    read_test_metrics,
    run_one,
    run_options,
    run_process,
    schedule_options,
    seconds_per_step,
    selection,
    summarize,
    trained_checkpoint,
    verdict,
    write_trained,
)

from conftest import write_tiny_config


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
    assert schedule_options(cfg, 21) == ['train_cfg.max_iters=21', 'param_scheduler.1.end=21']
    # a phase that would begin after the end (MMEngine: "end should be larger than begin",
    # once the training starts): refused, saying what the warm-up needs
    with pytest.raises(ValueError, match=r'--iters 10 is too short for this schedule: '
                       r'param_scheduler\.1 \(PolyLR\) begins at iteration 20, after '
                       r'param_scheduler\.0 \(LinearLR, iterations 0-20\) \(the warm-up\), so it '
                       r'would never run; give --iters 21 or more'):
        schedule_options(cfg, 10)
    with pytest.raises(ValueError, match='this config has max_epochs'):
        schedule_options(Config(dict(train_cfg=dict(max_epochs=3))), 10)
    with pytest.raises(ValueError, match='give iters or epochs'):
        schedule_options(cfg)


def test_schedule_options_by_epochs_keep_the_cosine_to_the_end():
    """The demo's schedule (1 warm-up epoch, a cosine to the end) shortened to 3 epochs: the
    cosine then spans epochs 1-3."""
    cfg = Config(dict(train_cfg=dict(by_epoch=True, max_epochs=4),
                      param_scheduler=[dict(type='LinearLR', begin=0, end=1),
                                       dict(type='CosineAnnealingLR', T_max=3, begin=1, end=4)]))
    assert schedule_options(cfg, epochs=3) == [
        'train_cfg.max_epochs=3', 'param_scheduler.1.end=3', 'param_scheduler.1.T_max=2']
    with pytest.raises(ValueError, match='this config has max_iters'):
        schedule_options(Config(dict(train_cfg=dict(max_iters=3))), epochs=2)


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
    options, _ = run_options(DEMO, [], 0, 30)
    run_dir = tmp_path / 'DA-VPT' / 'seed0'
    run_dir.mkdir(parents=True)
    done = dict(method='DA-VPT', seed=0, config=DEMO, cfg_options=options, metric='mIoU',
                amp=False, metrics=dict(ss=40.0, tta=41.0))
    (run_dir / RESULT_FILE).write_text(json.dumps(done))
    assert run_one('DA-VPT', DEMO, [], 0, str(tmp_path), ROOT, iters=30) == done
    with pytest.raises(ValueError, match='use another work dir'):
        run_one('DA-VPT', DEMO, [], 0, str(tmp_path), ROOT, iters=40)
    (run_dir / RESULT_FILE).write_text(json.dumps(dict(done, config_digest='0' * 40)))
    with pytest.raises(ValueError, match='the config file changed'):
        run_one('DA-VPT', DEMO, [], 0, str(tmp_path), ROOT, iters=30)
    # Options that spell out a value the config already has give the same merged config: the
    # same run, read back.
    digest = config_digest(run_options(DEMO, [], 0, 30)[1])
    (run_dir / RESULT_FILE).write_text(json.dumps(dict(done, config_digest=digest)))
    same = ['model.guidance.loss_xp.loss_weight=0.01']
    assert run_options(DEMO, same, 0, 30)[1].model.guidance.loss_xp.loss_weight == 0.01
    assert run_one('DA-VPT', DEMO, same, 0, str(tmp_path), ROOT, iters=30)['metrics'] == \
        dict(ss=40.0, tta=41.0)
    with pytest.raises(ValueError, match='use another work dir'):
        run_one('DA-VPT', DEMO, ['model.guidance.loss_xp.loss_weight=0.02'], 0, str(tmp_path),
                ROOT, iters=30)


CLS_DEMO = 'configs/demo/vit-s14-imgfocus_davpt_animal-mnist-56px.py'


def test_selection_best_val_where_the_config_keeps_it():
    """Classification configs validate and keep their best checkpoint: the run is tested with
    it and validation stays on; the segmentation demo has none: its final checkpoint."""
    options, cfg = run_options(CLS_DEMO, [], 0)
    assert selection(cfg) == 'val' and 'val_cfg=None' not in options
    assert cfg.val_dataloader is not None
    _, cfg = run_options(DEMO, [], 0, 30)
    assert selection(cfg) == 'final'
    _, cfg = run_options(CLS_DEMO, ['default_hooks.checkpoint.save_best=None'], 0)
    assert selection(cfg) == 'final' and cfg.val_cfg is None


def test_best_checkpoint(tmp_path):
    assert best_checkpoint(str(tmp_path)) is None
    (tmp_path / 'best_accuracy_top1_epoch_3.pth').write_bytes(b'')
    (tmp_path / 'epoch_4.pth').write_bytes(b'')
    assert best_checkpoint(str(tmp_path)) == str(tmp_path / 'best_accuracy_top1_epoch_3.pth')
    (tmp_path / 'best_accuracy_top1_epoch_4.pth').write_bytes(b'')
    with pytest.raises(RuntimeError, match='expected one best'):
        best_checkpoint(str(tmp_path))


def test_an_interrupted_training_is_not_tested(tmp_path):
    """A best-val checkpoint appears after the first validation, a final one may be left by a
    training killed while it wrote its last files: either is tested only once the training
    recorded its end (:data:`TRAINED_FILE`)."""
    _, cls_cfg = run_options(CLS_DEMO, [], 0)
    (tmp_path / 'best_accuracy_top1_epoch_2.pth').write_bytes(b'')
    assert trained_checkpoint(str(tmp_path), cls_cfg) is None
    write_trained(str(tmp_path), cls_cfg, False, 1.0, CLS_DEMO, [])
    assert trained_checkpoint(str(tmp_path), cls_cfg) == str(
        tmp_path / 'best_accuracy_top1_epoch_2.pth')
    seg_dir = tmp_path / 'seg'
    seg_dir.mkdir()
    _, seg_cfg = run_options(DEMO, [], 0, 30)
    (seg_dir / 'iter_30.pth').write_bytes(b'')
    assert trained_checkpoint(str(seg_dir), seg_cfg, amp=True) is None
    write_trained(str(seg_dir), seg_cfg, True, 1.0, DEMO, [])
    assert trained_checkpoint(str(seg_dir), seg_cfg, amp=True) == str(seg_dir / 'iter_30.pth')


def test_a_finished_training_of_another_run_is_not_tested_as_this_one(tmp_path):
    """A run dir holds a finished 3-epoch training and its best checkpoint but no result (the
    run was interrupted during its test): a 2-epoch run there, or one with --amp, is refused
    before anything is tested or recorded; so is a training that did not record its config."""
    run_dir = tmp_path / 'DA-VPT' / 'seed0'
    run_dir.mkdir(parents=True)
    options3, cfg3 = run_options(CLS_DEMO, [], 0, epochs=3)
    (run_dir / 'best_accuracy_top1_epoch_2.pth').write_bytes(b'')
    write_trained(str(run_dir), cfg3, False, 1.0, CLS_DEMO, options3)
    _, cfg2 = run_options(CLS_DEMO, [], 0, epochs=2)
    where = re.escape(str(run_dir))
    with pytest.raises(ValueError, match=rf'{where} holds a finished training of '
                       rf'{re.escape(CLS_DEMO)} with .*train_cfg\.max_epochs=3.* without --amp '
                       rf'.*not of this run .*Use another --work-dir, or delete {where}'):
        trained_checkpoint(str(run_dir), cfg2)
    with pytest.raises(ValueError, match=r'not of this run \(.* and --amp\)'):
        trained_checkpoint(str(run_dir), cfg3, amp=True)
    with pytest.raises(ValueError, match=rf'{where} holds a finished training of'):
        run_one('DA-VPT', CLS_DEMO, [], 0, str(tmp_path), ROOT, epochs=2)
    assert not (run_dir / RESULT_FILE).exists()
    (run_dir / TRAINED_FILE).write_text(json.dumps(dict(train_seconds=1.0)))
    with pytest.raises(ValueError, match='a config it did not record'):
        trained_checkpoint(str(run_dir), cfg3)
    (run_dir / TRAINED_FILE).write_text('1 s\n')
    with pytest.raises(ValueError, match='a config it did not record'):
        trained_checkpoint(str(run_dir), cfg3)


def test_a_result_is_read_back_only_for_the_same_precision_and_tests(tmp_path):
    """``--amp`` and ``--no-tta`` are part of a run's identity: a float32 result is not read
    back for an --amp request, a single-scale one not for a request with TTA."""
    options, cfg = run_options(DEMO, [], 0, 30)
    run_dir = tmp_path / 'DA-VPT' / 'seed0'
    run_dir.mkdir(parents=True)
    done = dict(method='DA-VPT', seed=0, config=DEMO, cfg_options=options, metric='mIoU',
                config_digest=config_digest(cfg), amp=False, metrics=dict(ss=40.0, tta=41.0))
    (run_dir / RESULT_FILE).write_text(json.dumps(done))
    assert run_one('DA-VPT', DEMO, [], 0, str(tmp_path), ROOT, iters=30) == done
    with pytest.raises(ValueError, match='is a run without --amp, not with'):
        run_one('DA-VPT', DEMO, [], 0, str(tmp_path), ROOT, iters=30, amp=True)
    with pytest.raises(ValueError, match=r"tested in the modes \['ss', 'tta'\], this run asks "
                       r"for \['ss'\] \(--no-tta\)"):
        run_one('DA-VPT', DEMO, [], 0, str(tmp_path), ROOT, iters=30, tta=False)
    (run_dir / RESULT_FILE).write_text(json.dumps(dict(done, amp=True, metrics=dict(ss=40.0))))
    with pytest.raises(ValueError, match=r"tested in the modes \['ss'\], this run asks for "
                       r"\['ss', 'tta'\]"):
        run_one('DA-VPT', DEMO, [], 0, str(tmp_path), ROOT, iters=30, amp=True)
    old = {k: v for k, v in done.items() if k != 'amp'}
    (run_dir / RESULT_FILE).write_text(json.dumps(old))
    with pytest.raises(ValueError, match='does not record whether its run used --amp'):
        run_one('DA-VPT', DEMO, [], 0, str(tmp_path), ROOT, iters=30)


def test_attention_shares_last_layer_per_other_prompt(tmp_path):
    path = tmp_path / 'attention_shares.json'
    layer = dict(cls=0.1, positive=0.3, others=0.2, patches=0.4, num_prompts=5, images=10)
    path.write_text(json.dumps({'model': {'3': dict(layer, positive=0.9), '11': layer}}))
    assert attention_shares(str(path)) == dict(layer=11, positive=0.3, other=pytest.approx(0.05))
    path.write_text(json.dumps({'model': {'11': dict(layer, positive=None)}}))
    assert attention_shares(str(path)) is None


def test_summary_averages_attention_and_table_shows_it():
    runs = _runs()
    for r, share in zip([r for r in runs if r['method'] == 'DA-VPT'], (0.2, 0.4, 0.3)):
        r['attention'] = dict(layer=11, positive=share, other=0.1)
    summary = summarize(runs, ['ss'], baseline='VPT')
    assert summary['VPT']['attention'] is None
    assert summary['DA-VPT']['attention'] == dict(layer=11, seeds=3, positive=pytest.approx(0.3),
                                                  other=pytest.approx(0.1))
    table = format_summary(summary, ['ss'], baseline='VPT')
    assert 'positive prompt / other prompt' in table and '| 30.0% / 10.0% |' in table


def test_verdict_follows_the_interval():
    def summary(diffs):
        runs = []
        for seed, d in enumerate(diffs):
            runs += [dict(method='A', seed=seed, metrics=dict(ss=50.0 + seed)),
                     dict(method='B', seed=seed, metrics=dict(ss=50.0 + seed + d))]
        return summarize(runs, ['ss'], baseline='A')

    assert verdict(summary([2.0, 2.5, 3.0]), 'B', 'A').endswith('B helped here.')
    assert verdict(summary([-2.0, -2.5, -3.0]), 'B', 'A').endswith('B did worse here.')
    mixed = verdict(summary([-2.0, 1.0, 3.0]), 'B', 'A')
    assert 'the interval contains 0' in mixed and '+0.67' in mixed
    assert verdict(summary([1.0]), 'B', 'A').endswith('no conclusion.')
    with pytest.raises(ValueError, match='no paired difference'):
        verdict(summary([1.0, 2.0]), 'A', 'A')


def test_verdict_and_table_pair_the_same_seeds_and_say_which():
    """DA-VPT seed 2 missing: both means of the sentence and the difference are over seeds 0
    and 1 (not VPT's mean over 3 seeds beside a difference over 2), and the left-out seed is
    named; the table marks the difference's seeds."""
    summary = summarize(_runs()[:-1], ['ss'], baseline='VPT')  # VPT 40, 41, 39; DA-VPT 42, 44
    line = verdict(summary, 'DA-VPT', 'VPT')
    assert line.startswith('DA-VPT 43.00 vs VPT 40.50 test accuracy (mean of the 2 seeds both '
                           'have, 0, 1; left out: VPT seed 2); paired difference +2.50, 95% t '
                           'interval [')
    assert ' (seeds 0,1) |' in format_summary(summary, ['ss'], baseline='VPT')
    summary = summarize(_runs(), ['ss'], baseline='VPT')
    assert verdict(summary, 'DA-VPT', 'VPT').startswith(
        'DA-VPT 42.00 vs VPT 40.00 test accuracy (mean of 3 seeds); paired difference +2.00')
    assert '(seeds' not in format_summary(summary, ['ss'], baseline='VPT')
    with pytest.raises(ValueError, match="DA-VPT has no finished run with 'ss': no verdict"):
        verdict(summarize(_runs()[::2], ['ss'], baseline='VPT'), 'DA-VPT', 'VPT')


def test_classification_run_is_tested_with_its_best_val_checkpoint(tmp_path):
    """The MMPretrain path end to end on a tiny config: train with validation, test the best-val
    checkpoint, read the best val value and the CLS -> prompt attention shares."""
    config = write_tiny_config(tmp_path, max_epochs=2)
    work_dir = str(tmp_path / 'compare')
    result = run_one('tiny', config, [], 0, work_dir, ROOT)
    assert result['selection'] == 'val'
    assert os.path.basename(result['checkpoint']).startswith('best_accuracy_top1_epoch_')
    assert set(result['metrics']) == {'ss', 'val'}
    assert 0 <= result['metrics']['ss'] <= 100 and 0 <= result['metrics']['val'] <= 100
    attention = result['attention']
    assert attention['layer'] == -1 or attention['layer'] >= 0
    assert 0 <= attention['positive'] <= 1 and 0 <= attention['other'] <= 1
    run_dir = tmp_path / 'compare' / 'tiny' / 'seed0'
    assert json.loads((run_dir / TRAINED_FILE).read_text())['train_seconds'] == \
        result['train_seconds'] > 0
    assert run_one('tiny', config, [], 0, work_dir, ROOT) == json.loads(
        (run_dir / RESULT_FILE).read_text())

    # The one-process run gives the numbers of the tools, each in its own process.
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONWARNINGS='ignore')

    def tool(*args):
        proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

    tool('tools/test.py', config, result['checkpoint'], '--work-dir', str(tmp_path / 'test'),
         '--cfg-options', *result['cfg_options'])
    assert read_test_metrics(str(tmp_path / 'test'))['accuracy/top1'] == result['metrics']['ss']
    tool('tools/analysis/visualize_attention.py', find_config(str(run_dir)),
         result['checkpoint'], '--split', 'val', '--layers', '-1', '--out',
         str(tmp_path / 'attention'), '--device', 'cpu')
    assert attention_shares(str(tmp_path / 'attention' / 'attention_shares.json')) == attention


def test_a_failed_run_process_raises_with_its_log(tmp_path):
    """The forked run's error (here: no such config) reaches the caller with its log's tail."""
    log = tmp_path / 'run.out'
    log.write_text('earlier output\n')
    with pytest.raises(RuntimeError, match='failed') as e:
        run_process(['no_such_config.py', '--work-dir', str(tmp_path / 'run')], str(log), 1,
                    ROOT)
    assert 'no_such_config.py' in str(e.value) and 'Error' in str(e.value)
    assert log.read_text().startswith('earlier output\n')  # appended to, not overwritten


def test_compare_methods_cli_parses_configs_and_variants():
    from conftest import load_tool
    tool = load_tool('tools/analysis/compare_methods.py')
    vpt = 'configs/demo/vit-s14-imgfocus_vpt-deep_animal-mnist-56px.py'
    methods = tool.parse_methods(
        [f'vpt={vpt}', CLS_DEMO],
        [['beta0', 'model.guidance.loss_xp.loss_weight=0'],
         ['paper', CLS_DEMO, 'model.guidance.loss_xp.sample_side=mhsa']], root=ROOT)
    assert list(methods) == ['vpt', 'vit-s14-imgfocus_davpt_animal-mnist-56px', 'beta0', 'paper']
    assert methods['vpt'] == (os.path.join(ROOT, vpt), [])
    assert methods['beta0'] == (os.path.join(ROOT, vpt), ['model.guidance.loss_xp.loss_weight=0'])
    assert methods['paper'] == (os.path.join(ROOT, CLS_DEMO),
                                ['model.guidance.loss_xp.sample_side=mhsa'])
    with pytest.raises(SystemExit, match='needs a config'):
        tool.parse_methods([], [['x', 'a=1']], root=ROOT)
    with pytest.raises(SystemExit, match='given twice'):
        tool.parse_methods([f'vpt={vpt}'], [['vpt', 'a=1']], root=ROOT)
    with pytest.raises(SystemExit, match='not found'):
        tool.parse_methods([], [['x', 'missing.py', 'a=1']], root=ROOT)


def test_pool_comparisons_pairs_over_files_and_seeds(tmp_path):
    from mmdavpt_lab.compare import pool_comparisons
    paths = []
    for task, shift in (('a', 0.0), ('b', 10.0)):
        runs = [dict(r, metrics=dict(ss=r['metrics']['ss'] + shift)) for r in _runs()]
        path = tmp_path / f'{task}.json'
        path.write_text(json.dumps(dict(metric='accuracy/top1', runs=runs)))
        paths.append(str(path))
    out = pool_comparisons(paths, baseline='VPT')
    diff = out['summary']['DA-VPT']['ss']['diff']
    assert diff['n'] == 6 and diff['mean'] == pytest.approx(2.0)  # +2, +3, +1 in both files
    assert out['summary']['VPT']['seeds'] == [0, 1, 2, 1000, 1001, 1002]
    assert '| DA-VPT |' in out['table'] and 'test - VPT' in out['table']
    (tmp_path / 'seg.json').write_text(json.dumps(dict(metric='mIoU', runs=_runs())))
    with pytest.raises(ValueError, match='compares mIoU'):
        pool_comparisons(paths + [str(tmp_path / 'seg.json')])


def _compare_json(path, runs, metric='accuracy/top1'):
    path.write_text(json.dumps(dict(metric=metric, runs=runs)))
    return str(path)


def test_pool_refuses_to_count_a_comparison_or_a_run_twice(tmp_path):
    """A compare.json and its copy (or one path twice) would double n and narrow the interval;
    a run's own compare_result.json is not a comparison."""
    from mmdavpt_lab.compare import pool_comparisons
    runs = [dict(r, config=f'{r["method"]}.py', cfg_options=[f'randomness.seed={r["seed"]}'],
                 config_digest=f'{r["method"]}-{r["seed"]}') for r in _runs()]
    a = _compare_json(tmp_path / 'a.json', runs)
    with pytest.raises(ValueError, match=r'a\.json is given twice'):
        pool_comparisons([a, str(tmp_path / '.' / 'a.json')], baseline='VPT')
    copy = _compare_json(tmp_path / 'copy.json', runs)
    with pytest.raises(ValueError, match=r'copy\.json and .*a\.json both hold the run VPT seed 0 '
                       r'\(the same config and seed\)'):
        pool_comparisons([a, copy], baseline='VPT')
    # runs of an older comparison (no digest): the same method, config, options and seed
    old = [{k: v for k, v in r.items() if k != 'config_digest'} for r in runs]
    with pytest.raises(ValueError, match='both hold the run VPT seed 0'):
        pool_comparisons([_compare_json(tmp_path / 'old_a.json', old),
                          _compare_json(tmp_path / 'old_b.json', old)], baseline='VPT')
    one_run = tmp_path / RESULT_FILE
    one_run.write_text(json.dumps(runs[0]))
    with pytest.raises(ValueError, match=rf"{RESULT_FILE} is not a compare.json .*: it is one "
                       rf"run's {RESULT_FILE}; pool the compare.json in its comparison's work "
                       'dir'):
        pool_comparisons([a, str(one_run)])


def test_compare_methods_pool_takes_no_training_options(tmp_path, capsys):
    from conftest import load_tool
    tool = load_tool('tools/analysis/compare_methods.py')
    a = _compare_json(tmp_path / 'a.json', _runs())
    for extra in (['--seeds', '0', '1'], ['--epochs', '2'], [CLS_DEMO], ['--amp']):
        with pytest.raises(SystemExit):
            tool.parse_args([*extra, '--pool', a])
        assert 'would be ignored' in capsys.readouterr().err
    assert tool.parse_args(['--pool', a, '--baseline', 'VPT']).seeds is None
    args = tool.parse_args([CLS_DEMO])
    assert (args.seeds, args.jobs, args.threads) == ([0, 1, 2], 1, 1)
    with pytest.raises(SystemExit, match=r'--pool: .*a\.json is given twice'):
        tool.main(['--pool', a, a])
    with pytest.raises(SystemExit, match=r'--pool: .*\.py is not a compare\.json .*not JSON'):
        tool.main(['--pool', a, CLS_DEMO])


def test_run_comparison_refuses_before_any_run_and_survives_a_failed_baseline(tmp_path,
                                                                             monkeypatch):
    """Repeated seeds (two runs of one run directory at once) and a schedule the warm-up leaves
    nothing of are refused before any run; when every baseline run fails the others are still
    summarised, unpaired, and the failures listed."""
    import mmdavpt_lab.compare as compare
    vpt = 'configs/demo/vit-s14-imgfocus_vpt-deep_animal-mnist-56px.py'
    methods = {'VPT': (vpt, []), 'DA-VPT': (CLS_DEMO, [])}
    started = []

    def fake_run_one(method, config, overrides, seed, work_dir, root, log=print, **kwargs):
        started.append((method, seed))
        if method == 'VPT':
            raise RuntimeError('the run process failed')
        return dict(method=method, seed=seed, metric='accuracy/top1',
                    metrics=dict(ss=80.0 + seed))

    monkeypatch.setattr(compare, 'run_one', fake_run_one)
    with pytest.raises(ValueError, match=r'seeds \[0, 0\] repeat \[0\]'):
        compare.run_comparison(methods, [0, 0], str(tmp_path), ROOT, baseline='VPT', jobs=2)
    with pytest.raises(ValueError, match=r'VPT \(.*\): --epochs 1 is too short for this '
                       r'schedule: param_scheduler\.1 \(CosineAnnealingLR\) begins at epoch 1'):
        compare.run_comparison(methods, [0, 1], str(tmp_path), ROOT, baseline='VPT', epochs=1)
    assert started == []
    out = compare.run_comparison(methods, [0, 1], str(tmp_path), ROOT, baseline='VPT',
                                 epochs=2, log=lambda line: None)
    assert out['baseline'] is None and list(out['summary']) == ['DA-VPT']
    assert [(f['method'], f['seed']) for f in out['failed']] == [('VPT', 0), ('VPT', 1)]


def test_compare_methods_exits_non_zero_when_runs_failed(tmp_path, monkeypatch, capsys):
    from conftest import load_tool
    tool = load_tool('tools/analysis/compare_methods.py')

    def fake_comparison(methods, seeds, work_dir, root, **kwargs):
        runs = [dict(method='DA-VPT', seed=s, metrics=dict(ss=80.0)) for s in seeds]
        return dict(metric='accuracy/top1', runs=runs, table='TABLE', plot='compare.png',
                    failed=[dict(method='VPT', seed=s, error='boom') for s in seeds])

    monkeypatch.setattr(tool, 'run_comparison', fake_comparison)
    with pytest.raises(SystemExit, match=r'4 runs failed \(listed above\); the table leaves '
                       'them out'):
        tool.main([CLS_DEMO, '--seeds', '0', '1', '--work-dir', str(tmp_path)])
    out = capsys.readouterr().out
    assert 'TABLE' in out and 'FAILED: VPT seed 1: boom' in out
    with pytest.raises(SystemExit):
        tool.parse_args([CLS_DEMO, '--seeds', '0', '0'])
    assert '--seeds 0 0 repeats a seed' in capsys.readouterr().err
