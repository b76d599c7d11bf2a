"""tools/analysis/benchmark.py: a smoke test (a tiny ViT, two rounds per method, the JSON schema
and the table) and the report of synthetic timing series with a known spread (its intervals and
verdicts).

No timing is asserted (the numbers of a tiny model on a shared machine mean nothing); the real
measurement is docs/reports/performance.md.
"""
import importlib
import json
import math
import os.path as osp

import pytest

from mmdavpt_lab.timing import CANNOT_TELL, MET, OVER, VERDICTS

from conftest import paired_times

TOOLS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'analysis')


def test_benchmark_runs_and_writes_the_report(tmp_path, monkeypatch, capsys):
    # The memory children import the tool by name, so it must be on their sys.path too.
    monkeypatch.syspath_prepend(TOOLS)
    benchmark = importlib.import_module('benchmark')
    out = tmp_path / 'bench.json'
    benchmark.main([
        '--arch', 'tiny', '--img-size', '32', '--batch-size', '2', '--methods',
        ','.join(benchmark.METHODS), '--rounds', '2', '--warmup', '1', '--mem-steps', '1',
        '--num-prompts', '3', '--num-classes', '5', '--remap-classes', '12', '--remap-dim',
        '8', '--remap-prompts', '3,5', '--remap-repeats', '1', '--device', 'cpu', '--amp',
        '--out', str(out)
    ])
    report = json.loads(out.read_text())

    assert list(report['results']) == list(benchmark.METHODS)
    for method, res in report['results'].items():
        for key in ('train_step_s', 'peak_mem_mb', 'eval_img_per_s'):
            assert isinstance(res[key], float) and math.isfinite(res[key]), (method, key)
        assert res['train_step_s'] > 0 and res['eval_img_per_s'] > 0
        assert isinstance(res['tunable_params'], int) and res['tunable_params'] > 0
        assert res['nonfinite_steps'] == 0, method  # bf16 autocast with the guidance losses
    params = {m: r['tunable_params'] for m, r in report['results'].items()}
    assert params['linear'] < params['vpt_deep'] == params['davpt'] < params['davpt_plus'] \
        < params['full']
    ratios = report['ratios_vs_vpt_deep']
    assert set(ratios) == set(benchmark.METHODS)
    assert ratios['vpt_deep']['peak_mem'] == 1.0
    for key in ('train_step', 'train_step_cpu', 'eval_time', 'eval_time_cpu'):
        assert ratios['vpt_deep'][key]['ratio'] == 1.0, key
        for r in ratios.values():
            assert r[key]['n'] == 2 and r[key]['low'] <= r[key]['ratio'] <= r[key]['high']
    for res in report['results'].values():
        assert len(res['train_step_all_s']) == len(res['train_step_cpu_all_s']) == 2
        assert res['train_step']['n'] == 2 and res['train_step']['iqr_s'] >= 0
    assert {'with_prompts', 'no_prompts', 'prompts_vs_no_prompts', 'with_prompts_cpu',
            'no_prompts_cpu'} <= set(report['eval_ratio_vs_upstream'])
    assert set(report['reference']) == {'upstream_vit', 'davpt_vit_prompts',
                                        'davpt_vit_no_prompts'}
    assert set(report['remap']) == {'3', '5'}
    for v in report['remap'].values():
        assert v['first_s'] > 0 and v['warm_s'] > 0
    assert set(report['checks']) == set(benchmark.TARGETS)
    for name, check in report['checks'].items():
        assert check['verdict'] in VERDICTS and check['limit'] == benchmark.TARGETS[name]
    assert report['memory_basis'].startswith('cpu')
    assert report['machine']['cpu_model'] and report['machine']['torch_threads'] >= 1
    assert len(report['load_before']) == len(report['load_after']) == 3
    table = capsys.readouterr().out
    assert '| DA-VPT+ |' in table and 'vs VPT-Deep, wall [95%]' in table
    assert '2 rounds (+1 warm-up)' in table and 'load average' in table


def test_unknown_method_is_refused(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(TOOLS)
    benchmark = importlib.import_module('benchmark')
    args = benchmark.parse_args(['--methods', 'vpt_deep,lora', '--out', str(tmp_path / 'x')])
    with pytest.raises(ValueError, match='lora'):
        benchmark.run(args)


def synthetic_speed(rounds: int) -> dict:
    """What ``measure_speed`` returns, from synthetic series: DA-VPT's step 1.00x VPT-Deep's,
    DA-VPT+'s 1.10x (both with a 1 % spread), the prompted backbone's eval 1.05x the upstream
    one's with a 5 % spread, the unprompted one's 1.00x with 0.1 %; the CPU times 10x steadier."""
    def pair(ratio, log_std):
        wall = paired_times(ratio, log_std, rounds)
        return wall, paired_times(ratio, log_std / 10, rounds)

    (davpt, vpt), (davpt_c, vpt_c) = pair(1.00, 0.01)
    (plus, _), (plus_c, _) = pair(1.10, 0.01)
    (prompts, up), (prompts_c, up_c) = pair(1.05, 0.05)
    (no_prompts, _), (no_prompts_c, _) = pair(1.00, 0.001)
    train = dict(vpt_deep=(vpt, vpt_c), davpt=(davpt, davpt_c), davpt_plus=(plus, plus_c))
    evals = dict(train, upstream_vit=(up, up_c), davpt_vit_prompts=(prompts, prompts_c),
                 davpt_vit_no_prompts=(no_prompts, no_prompts_c))
    return dict(train_wall={m: w for m, (w, _) in train.items()},
                train_cpu={m: c for m, (_, c) in train.items()},
                eval_wall={m: w for m, (w, _) in evals.items()},
                eval_cpu={m: c for m, (_, c) in evals.items()},
                losses={m: [1.0] * rounds for m in train}, tunable={m: 100 for m in train})


def test_report_of_synthetic_times_has_the_intervals_and_the_three_verdicts(
        tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(TOOLS)
    benchmark = importlib.import_module('benchmark')
    monkeypatch.setattr(benchmark, 'measure_speed', lambda methods, args: synthetic_speed(10))
    mem = dict(vpt_deep=629.0, davpt=635.0, davpt_plus=635.0)
    monkeypatch.setattr(benchmark, 'measure_memory', lambda methods, args: {
        m: dict(peak_mem_mb=mem[m], peak_mem_total_mb=mem[m] + 300, basis='cpu synthetic')
        for m in methods})
    remaps = [0.04, 0.05, 0.06]
    monkeypatch.setattr(benchmark, 'time_remap', lambda *a: {'10': dict(
        first_s=0.05, warm_s=0.01, first_all_s=remaps, warm_all_s=[0.01] * 3)})
    report = benchmark.main(['--methods', 'vpt_deep,davpt,davpt_plus', '--rounds', '10',
                             '--remap-prompts', '10', '--out', str(tmp_path / 'bench.json')])

    checks = report['checks']
    assert {k: c['verdict'] for k, c in checks.items()} == {
        'train_step davpt / vpt_deep': MET,
        'train_step davpt_plus / vpt_deep': OVER,
        'peak_mem davpt / vpt_deep': MET,
        'eval backbone with prompts / upstream': CANNOT_TELL,
        'eval backbone no prompts / upstream': MET,
        'remap seconds (max over M, first and warm)': MET}
    prompts = checks['eval backbone with prompts / upstream']
    assert prompts['ratio'] == pytest.approx(1.05)
    assert prompts['low'] < 1.08 < prompts['high']
    assert prompts['rounds_to_resolve'] == 15  # (1.96 * 0.05 / log(1.08 / 1.05))^2 = 12.1, t: 15
    assert prompts['cpu']['verdict'] == MET  # the steadier CPU times decide it
    assert checks['train_step davpt_plus / vpt_deep']['low'] > 1.05
    assert checks['remap seconds (max over M, first and warm)']['slowest'] == dict(
        M=10, kind='first')
    ratios = report['ratios_vs_vpt_deep']
    assert ratios['davpt']['train_step']['ratio'] == pytest.approx(1.0)
    assert ratios['davpt']['peak_mem'] == pytest.approx(635 / 629)
    with_prompts = report['eval_ratio_vs_upstream']['prompts_vs_no_prompts']
    assert with_prompts['ratio'] == pytest.approx(1.05)
    saved = json.loads((tmp_path / 'bench.json').read_text())
    assert saved['checks'] == json.loads(json.dumps(checks))

    table = capsys.readouterr().out
    row = next(line for line in table.splitlines()
               if line.startswith('| eval backbone with prompts'))
    assert f"{prompts['ratio']:.3f} [{prompts['low']:.3f}, {prompts['high']:.3f}]" in row
    assert f"| {CANNOT_TELL} |" in row and f"~{prompts['rounds_to_resolve']}, -" in row
    assert '| over |' in next(line for line in table.splitlines()
                              if line.startswith('| train_step davpt_plus'))
