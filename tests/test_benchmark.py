"""Smoke test of tools/analysis/benchmark.py: a tiny ViT, one step per method, the JSON schema.

No timing is asserted (the numbers of a tiny model on a shared machine mean nothing); the real
measurement is docs/performance.md.
"""
import importlib
import json
import math
import os.path as osp

import pytest

TOOLS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'analysis')


def test_benchmark_runs_and_writes_the_report(tmp_path, monkeypatch, capsys):
    # The memory children import the tool by name, so it must be on their sys.path too.
    monkeypatch.syspath_prepend(TOOLS)
    benchmark = importlib.import_module('benchmark')
    out = tmp_path / 'bench.json'
    benchmark.main([
        '--arch', 'tiny', '--img-size', '32', '--batch-size', '2', '--methods',
        ','.join(benchmark.METHODS), '--steps', '1', '--warmup', '1', '--mem-steps', '1',
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
    assert all(ratios['vpt_deep'][k] == 1.0 for k in ('train_step', 'peak_mem', 'eval_time'))
    assert {'with_prompts', 'no_prompts'} <= set(report['eval_ratio_vs_upstream'])
    assert set(report['reference']) == {'upstream_vit', 'davpt_vit_prompts',
                                        'davpt_vit_no_prompts'}
    assert set(report['remap']) == {'3', '5'}
    for v in report['remap'].values():
        assert v['first_s'] > 0 and v['warm_s'] > 0
    assert set(report['checks']) == set(benchmark.TARGETS)
    assert report['memory_basis'].startswith('cpu')
    assert '| DA-VPT+ |' in capsys.readouterr().out


def test_unknown_method_is_refused(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(TOOLS)
    benchmark = importlib.import_module('benchmark')
    args = benchmark.parse_args(['--methods', 'vpt_deep,lora', '--out', str(tmp_path / 'x')])
    with pytest.raises(ValueError, match='lora'):
        benchmark.run(args)
