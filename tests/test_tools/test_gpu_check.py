"""``tools/analysis/gpu_check.py`` on the CPU: the driver (timeouts, skipping, one JSON), the
command of every check as it runs on a GPU, and the readers of what the checks write."""
import json
import subprocess
import sys
from importlib import metadata

import pytest
import torch

from conftest import load_tool


@pytest.fixture(scope='module')
def gpu_check():
    return load_tool('tools/analysis/gpu_check.py')


def fake_check(gpu_check, name, code, results=None):
    """A check whose command is ``python -c code``."""
    return gpu_check.Check(name, lambda ctx: [ctx.python, '-c', code],
                           results or (lambda ctx: {'read': True}))


def context(gpu_check, tmp_path, gpus=1):
    return gpu_check.Context(python=sys.executable, work_dir=str(tmp_path / 'work'), gpus=gpus)


def test_gpu_check_runs_each_check_on_its_own(gpu_check, tmp_path):
    """A failing, a hanging and a broken-output check do not stop the others; the JSON holds
    every check and the log every check's output."""
    def broken(ctx):
        raise FileNotFoundError('no report')

    checks = [
        fake_check(gpu_check, 'fails', 'import sys; print("bad"); sys.exit(3)'),
        fake_check(gpu_check, 'hangs', 'import time; print("sleeping", flush=True); '
                   'time.sleep(60)'),
        fake_check(gpu_check, 'no_report', 'print("fine")', results=broken),
        fake_check(gpu_check, 'ok', 'print("fine")'),
        gpu_check.Check('needs_input', lambda ctx: None, lambda ctx: {},
                        missing=lambda ctx: 'no ckpt'),
    ]
    out = tmp_path / 'out' / 'gpu_check.json'
    report = gpu_check.run_checks(context(gpu_check, tmp_path), checks, str(out), timeout_s=3)
    saved = json.loads(out.read_text())
    assert saved['checks'] == report['checks']
    got = {name: c['status'] for name, c in saved['checks'].items()}
    assert got == dict(fails='failed', hangs='timeout', no_report='unreadable', ok='ok',
                       needs_input='skipped')
    assert saved['checks']['fails']['returncode'] == 3
    assert saved['checks']['hangs']['seconds'] < 30
    assert saved['checks']['no_report']['results_error'] == 'FileNotFoundError: no report'
    assert saved['checks']['ok']['results'] == {'read': True}
    assert saved['checks']['needs_input']['reason'] == 'no ckpt'
    log = (tmp_path / 'out' / 'gpu_check.log').read_text()
    assert 'bad' in log and 'sleeping' in log and '===== ok: ok' in log


def test_a_check_that_ignores_sigterm_is_killed(gpu_check, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, 'KILL_GRACE_S', 0.5)
    stubborn = fake_check(gpu_check, 'stubborn', 'import signal, time; '
                          'signal.signal(signal.SIGTERM, signal.SIG_IGN); '
                          'print("ready", flush=True); time.sleep(60)')
    out = tmp_path / 'gpu_check.json'
    report = gpu_check.run_checks(context(gpu_check, tmp_path), [stubborn], str(out), timeout_s=2)
    assert report['checks']['stubborn']['status'] == 'timeout'
    assert report['checks']['stubborn']['returncode'] == -9  # SIGKILL after SIGTERM's grace
    done = subprocess.Popen([sys.executable, '-c', 'pass'], start_new_session=True)
    done.wait()
    gpu_check._kill_group(done)  # its group is gone: nothing to do


def test_gpu_check_selects_checks_by_name(gpu_check):
    names = [c.name for c in gpu_check.CHECKS]
    assert names == ['env', 'train_fp16', 'test_fp16', 'seg_memory', 'step_ratio', 'dist_train']
    assert gpu_check.select(names, None, None) == names
    assert gpu_check.select(names, 'seg_memory,env', None) == ['env', 'seg_memory']
    assert gpu_check.select(names, None, 'env') == names[1:]
    with pytest.raises(ValueError, match='benchmark'):
        gpu_check.select(names, 'benchmark', None)


def test_each_check_runs_what_a_gpu_user_needs(gpu_check, tmp_path, monkeypatch):
    """The commands as they run on a machine with two GPUs and the demo inputs; without the
    inputs, or with one GPU, the checks that need them are skipped saying why."""
    ctx = context(gpu_check, tmp_path, gpus=2)
    work = ctx.work_dir
    checks = {c.name: c for c in gpu_check.CHECKS}
    monkeypatch.setattr(gpu_check, 'missing_demo_inputs', lambda: '')
    commands = {name: check.command(ctx) for name, check in checks.items()}
    assert commands['env'][1:] == [gpu_check.__file__, '--env', f'{work}/env.json']
    assert commands['train_fp16'][1:5] == ['tools/train.py', gpu_check.DEMO_CONFIG, '--amp',
                                           '--work-dir']
    assert commands['test_fp16'] is None  # no training run yet
    (tmp_path / 'work' / 'train_fp16').mkdir(parents=True)
    best = tmp_path / 'work' / 'train_fp16' / 'best_accuracy_top1_epoch_3.pth'
    best.touch()
    assert checks['test_fp16'].command(ctx)[1:4] == ['tools/test.py', gpu_check.DEMO_CONFIG,
                                                       str(best)]
    seg = commands['seg_memory']
    assert seg[1:3] == ['tools/analysis/seg_memory.py', gpu_check.SEG_CONFIG]
    assert seg[seg.index('--device') + 1] == 'cuda' and seg[seg.index('--full-size') + 1] == '512'
    bench = commands['step_ratio']
    assert bench[bench.index('--device') + 1] == 'cuda'
    assert bench[bench.index('--methods') + 1].split(',')[0] == 'vpt_deep'
    dist = commands['dist_train']
    assert dist[:4] == ['bash', 'tools/dist_train.sh', gpu_check.DEMO_CONFIG, '2']
    assert 'env_cfg.dist_cfg.backend=nccl' in dist

    one_gpu = context(gpu_check, tmp_path, gpus=1)
    assert checks['dist_train'].command(one_gpu) is None
    assert checks['dist_train'].missing(one_gpu) == 'two processes on two GPUs; torch sees 1'
    monkeypatch.undo()
    empty = tmp_path / 'empty'
    empty.mkdir()
    monkeypatch.setattr(gpu_check, 'ROOT', str(empty))
    assert checks['train_fp16'].command(ctx) is None
    reason = checks['train_fp16'].missing(ctx)
    assert 'data/animal_mnist_vtab is missing (python tools/prepare_demo_data.py' in reason
    assert checks['dist_train'].missing(ctx) == reason
    assert 'left no best_accuracy' in checks['test_fp16'].missing(ctx)


def test_check_results_are_read_from_the_files_written(gpu_check, tmp_path):
    ctx = context(gpu_check, tmp_path)
    checks = {c.name: c for c in gpu_check.CHECKS}
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'env.json').write_text(json.dumps({'torch': '2.x'}))
    (work / 'seg_memory.json').write_text(json.dumps({'measured': []}))
    bench = dict(ratios_vs_vpt_deep=dict(vpt_deep=dict(train_step=1.0),
                                         davpt=dict(train_step=1.02)))
    (work / 'step_ratio.json').write_text(json.dumps(bench))
    assert checks['env'].results(ctx) == {'torch': '2.x'}
    assert checks['seg_memory'].results(ctx) == {'measured': []}
    assert checks['step_ratio'].results(ctx) == dict(
        train_step_vs_vpt_deep=dict(davpt=1.02, davpt_plus=None), benchmark=bench)
    assert checks['test_fp16'].results(ctx) == dict(test_top1=None, checkpoint=None)
    with pytest.raises(FileNotFoundError, match='no training scalars'):
        checks['train_fp16'].results(ctx)
    with pytest.raises(FileNotFoundError, match='no training scalars'):
        checks['dist_train'].results(ctx)


def test_training_summary_reads_the_work_dir(gpu_check, tmp_path):
    """The training check's figures come from the scalars mmengine wrote and the best
    checkpoint: finite losses, val accuracy, CUDA memory, the mapping and the AMP loss scale."""
    run = tmp_path / '20260101_000000' / 'vis_data'
    run.mkdir(parents=True)
    rows = [dict(loss=3.0, loss_cls=2.0, loss_ml_xp=1.0, iter=5, time=0.2, memory=900),
            dict(loss=2.0, loss_cls=1.5, loss_ml_xp=0.5, iter=10, time=0.1, memory=950),
            {'accuracy/top1': 61.5, 'step': 1}]
    (run / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
    torch.save(dict(meta=dict(epoch=1), optimizer=dict(loss_scaler=dict(scale=4096.)),
                    state_dict={'guidance.mapping.num_remaps': torch.tensor(2),
                                'guidance.mapping.class_to_prompt': torch.tensor([1, 0, 1])}),
               tmp_path / 'best_accuracy_top1_epoch_1.pth')
    summary = gpu_check.training_summary(str(tmp_path))
    assert summary['losses_finite'] and summary['last_logged_iter'] == 10
    assert summary['first_losses']['loss'] == 3.0 and summary['last_losses']['loss_ml_xp'] == 0.5
    assert summary['val_top1'] == [dict(epoch=1, top1=61.5)]
    assert summary['max_memory_mb'] == 950 and summary['seconds_per_iter'] == 0.1
    assert summary['num_remaps'] == 2 and summary['class_to_prompt'] == [1, 0, 1]
    assert summary['loss_scale'] == 4096.
    rows[1]['loss_ml_xp'] = float('nan')
    (run / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
    assert not gpu_check.training_summary(str(tmp_path))['losses_finite']
    (tmp_path / 'best_accuracy_top1_epoch_1.pth').write_bytes(b'not a checkpoint')
    assert 'checkpoint_error' in gpu_check.training_summary(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='no training scalars'):
        gpu_check.training_summary(str(tmp_path / 'nothing'))


class _Props:
    name, total_memory, major, minor, multi_processor_count = 'Fake GPU', 80 * 2**30, 9, 0, 132


def test_environment_record_with_and_without_cuda(gpu_check, tmp_path, monkeypatch):
    out = tmp_path / 'env.json'
    assert gpu_check.main(['--env', str(out)]) == 1  # this CPU machine: no CUDA
    info = json.loads(out.read_text())
    assert info['mmcv_ops'] is True and info['cuda_available'] is False
    assert info['torch'] == torch.__version__ and 'gpus' not in info
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setattr(torch.cuda, 'get_device_properties', lambda i: _Props())
    monkeypatch.setattr(torch.cuda.nccl, 'version', lambda: (2, 27, 3))
    monkeypatch.setattr(torch.backends.cudnn, 'version', lambda: 91000)
    assert gpu_check.main(['--env', str(out)]) == 0
    info = json.loads(out.read_text())
    assert info['nccl'] == [2, 27, 3] and info['cudnn'] == 91000
    assert info['gpus'] == [dict(name='Fake GPU', memory_gib=80.0, capability='9.0',
                                 multiprocessors=132)] * 2
    # a missing package and an mmcv without its compiled ops are reported, not raised
    version = metadata.version

    def without_mmseg(dist):
        if dist == 'mmsegmentation':
            raise metadata.PackageNotFoundError(dist)
        return version(dist)

    monkeypatch.setattr(metadata, 'version', without_mmseg)
    monkeypatch.setitem(sys.modules, 'mmcv.ops', None)
    assert gpu_check.main(['--env', str(out)]) == 1
    info = json.loads(out.read_text())
    assert info['mmsegmentation'] is None and info['mmcv_ops'].startswith('ModuleNotFoundError')


def test_main_runs_the_selected_checks_into_one_report(gpu_check, tmp_path, monkeypatch):
    checks = (fake_check(gpu_check, 'first', 'print(1)'),
              fake_check(gpu_check, 'second', 'import sys; sys.exit(1)'))
    monkeypatch.setattr(gpu_check, 'CHECKS', checks)
    out = tmp_path / 'report.json'
    args = ['--out', str(out), '--work-dir', str(tmp_path / 'work')]
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 0)
    with pytest.raises(SystemExit, match='torch sees no CUDA device'):
        gpu_check.main(args)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    assert gpu_check.main(args + ['--only', 'first']) == 0
    assert list(json.loads(out.read_text())['checks']) == ['first']
    assert gpu_check.main(args) == 1
    report = json.loads(out.read_text())
    assert {k: v['status'] for k, v in report['checks'].items()} == dict(first='ok',
                                                                          second='failed')
    assert report['gpus'] == 1
    with pytest.raises(SystemExit):
        gpu_check.parse_args(['--timeout-s', '0'])
