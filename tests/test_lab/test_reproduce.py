"""``tools/reproduce.py``: the plan of a table, its commands, skipping finished runs by their
merged config, resuming, failures, and a real run on a tiny VTAB-1k tree (random deit-tiny
backbone, one epoch of one iteration) collected beside the paper's numbers."""
import csv
import json
import os
import os.path as osp
import re
import subprocess

import pytest

from mmdavpt.datasets import FGVC_DATASETS, VTAB_GROUPS, VTAB_TASKS
from mmdavpt_lab import reproduce
from mmdavpt_lab.real_layouts import build_vtab1k

from conftest import REPO, load_tool

#: A random deit-tiny backbone (12 layers, 192 wide) instead of the pre-trained ViT-B, one epoch,
#: no loader workers: the shipped config otherwise unchanged.
TINY = ['model.backbone.arch=deit-t', 'model.head.in_channels=192',
        'model.backbone.allow_random_backbone=True', 'model.backbone.init_cfg=None',
        'train_cfg.max_epochs=1', 'train_dataloader.num_workers=0',
        'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0']
TASK = 'patch_camelyon'  # 2 classes, 96 x 96 images


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/reproduce.py')


def run_tool(tool, capsys, *argv):
    code = tool.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- the plan --------------------------------------------------------------------------------
def test_dry_run_plans_19_tasks_x_methods_x_seeds_and_prints_each_command(
        tool, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the commands name configs and tools relative to it
    work_root = str(tmp_path / 'w')
    code, out, _ = run_tool(tool, capsys, 'vtab1k', '--methods', 'davpt', '--seeds', '0', '1',
                            '--work-root', work_root, '--dry-run')
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith('# vtab1k: 19 tasks x 1 methods x 1 pre-trainings x 2 seeds = '
                               '38 (config, seed) pairs, 76 runs; 76 not run')
    trains = [line for line in lines if line.startswith('python tools/train.py ')]
    tests = [line for line in lines if line.startswith('python tools/test.py ')]
    assert len(trains) == 76 and len(tests) == 38
    for task in VTAB_TASKS:
        config = (f'configs/classification/davpt/vit-b16-in21k_davpt_vtab-'
                  f'{task.replace("_", "-")}.py')
        mine = [t for t in trains if f' {config} ' in t]
        assert len(mine) == 4, task  # 2 seeds x (selection, final)
        for seed in (0, 1):
            select, final = (t for t in mine if f'randomness.seed={seed} ' in t + ' ')
            assert 'split=' not in select and ' val_cfg=None' not in select
            assert f'model.guidance.mapping.seed={seed}' in select
            assert 'train_dataloader.dataset.split=train800val200' in final
            assert 'val_cfg=None val_dataloader=None val_evaluator=None' in final
            assert 'default_hooks.checkpoint.save_best=None' in final
            work_dir = re.search(r'--work-dir (\S+)', final).group(1)
            assert re.fullmatch(rf'{work_root}/vtab1k/{osp.basename(config)[:-3]}/'
                                rf'seed{seed}_final_[0-9a-f]{{8}}', work_dir)
            test, = (t for t in tests if f'{work_dir}/epoch_100.pth ' in t)
            assert f'--work-dir {work_dir}/test_ss' in test and '--tta' not in test
    # each final run comes after its selection run
    selects = [i for i, line in enumerate(lines) if ' select (selection' in line]
    assert all(' final (final: train on train800val200, test ss)' in lines[i + 2]
               for i in selects)
    assert not osp.exists(work_root)  # a dry run writes nothing


def test_segmentation_plan_keeps_the_total_batch_and_tests_with_tta(tool, capsys, tmp_path,
                                                                     monkeypatch):
    monkeypatch.chdir(REPO)
    code, out, _ = run_tool(tool, capsys, 'ade20k', '--methods', 'davpt', '--seeds', '0',
                            '--launcher', 'pytorch', '--gpus', '4', '--dry-run',
                            '--work-root', str(tmp_path))
    assert code == 0
    assert out.splitlines()[0].startswith('# ade20k: 1 tasks x 1 methods x 1 pre-trainings x 1 '
                                          'seeds = 1 (config, seed) pairs, 1 runs')
    train, test_ss, test_tta = [line for line in out.splitlines()
                                if line.startswith('bash tools/dist_')]
    config = 'configs/segmentation/setr_pup_davpt_vit-l_8xb2-160k_ade20k-512x512.py'
    assert train.startswith(f'bash tools/dist_train.sh {config} 4 --work-dir ')
    # 16 images per iteration as 8 GPUs x 2: 4 GPUs x 4
    assert 'train_dataloader.batch_size=4' in train and 'val_cfg=None' in train
    assert test_ss.startswith(f'bash tools/dist_test.sh {config} ') and '/iter_160000.pth 4 ' \
        in test_ss and '--tta' not in test_ss
    assert '/test_tta --tta ' in test_tta
    _, out8, _ = run_tool(tool, capsys, 'ade20k', '--methods', 'davpt', '--seeds', '0',
                          '--launcher', 'pytorch', '--gpus', '8', '--dry-run',
                          '--work-root', str(tmp_path))
    assert 'batch_size' not in out8  # the config's own 8 x 2


@pytest.mark.parametrize('argv, message', [
    (['vtab1k', '--methods', 'vpt'], "vtab1k method 'vpt' is not one of"),
    (['ade20k', '--pretrain', 'mae'], "pre-training 'mae' is not one of in21k"),
    (['fgvc', '--tasks', 'cifar'], "fgvc task 'cifar' is not one of"),
    (['vtab1k', '--methods', 'linear', '--tasks', 'dtd', '--cfg-options', 'randomness.seed=3'],
     'randomness.seed: the planner sets these for the protocol'),
    (['vtab1k', '--methods', 'linear', '--tasks', 'dtd', '--launcher', 'pytorch', '--gpus', '3'],
     '32 images per iteration (the protocol) do not split over 3 GPUs'),
    (['vtab1k', '--methods', 'linear', '--tasks', 'dtd', '--launcher', 'slurm'],
     '--launcher slurm needs --partition'),
    (['vtab1k', '--methods', 'linear', '--tasks', 'dtd', '--gpus', '2'],
     '--launcher none trains on one device'),
])
def test_bad_requests_are_refused_naming_the_problem(tool, capsys, tmp_path, monkeypatch, argv,
                                                     message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_tool(tool, capsys, *argv, '--dry-run')
    assert code == 2 and message in err


def test_an_interrupted_run_is_resumed_and_a_trained_one_only_tested(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run, = reproduce.plan('fgvc', methods=['linear'], seeds=[0], tasks=['cub'],
                          work_root='w')[1:]
    assert run.stage == 'final' and run.checkpoint.endswith('/epoch_100.pth')
    assert 'train_dataloader.dataset.split=trainval' in run.cfg_options
    state = reproduce.run_state(run)
    assert state.state == reproduce.NOT_RUN
    train, = reproduce.steps(run, state)[:1]
    assert '--resume' not in train.argv
    # MMEngine's periodic checkpoint and its last_checkpoint file: an interruption
    os.makedirs(run.work_dir)
    open(osp.join(run.work_dir, 'epoch_40.pth'), 'wb').close()
    with open(osp.join(run.work_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(run.work_dir, 'epoch_40.pth'))
    state = reproduce.run_state(run)
    assert state.state == reproduce.INTERRUPTED
    train, test = reproduce.steps(run, state, launcher='pytorch', gpus=1)
    assert train.argv[0] == 'bash' and train.argv[2:4] == [run.config, '1']
    assert osp.samefile(train.argv[1], osp.join(REPO, 'tools', 'dist_train.sh'))
    assert train.argv[4:7] == ['--work-dir', run.work_dir, '--resume'] and train.resume
    assert test.argv[3:5] == [run.checkpoint, '1']
    # the final checkpoint, no test yet: only the test is left
    open(run.checkpoint, 'wb').close()
    state = reproduce.run_state(run)
    assert state.state == reproduce.TRAINED
    assert [s.name for s in reproduce.steps(run, state)] == ['test_ss']


def test_slurm_launch_goes_through_slurm_train_and_a_step_that_leaves_nothing_fails(
        tmp_path, monkeypatch):
    """A stand-in ``srun`` records its arguments and trains nothing: the run is failed, with
    the launcher's log, and its final run is not launched."""
    fake = tmp_path / 'bin' / 'srun'
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" >> "$RECORD"\n')
    fake.chmod(0o755)
    record = tmp_path / 'srun.txt'
    monkeypatch.setenv('PATH', f'{fake.parent}:{os.environ["PATH"]}')
    monkeypatch.setenv('RECORD', str(record))
    monkeypatch.chdir(tmp_path)
    runs = reproduce.plan('fgvc', methods=['linear'], seeds=[0], tasks=['cub'], work_root='w',
                          gpus=2)
    assert 'train_dataloader.batch_size=16' in runs[0].cfg_options  # 2 GPUs x 16 = 32
    states = reproduce.execute(runs, launcher='slurm', gpus=2, partition='gpu', log=lambda s: 0)
    lines = record.read_text().splitlines()
    assert lines[:6] == ['-p', 'gpu', '--job-name=vit-b16-in21k_linear_fgvc-cub_s0_select_train',
                          '--gres=gpu:2', '--ntasks=2', '--ntasks-per-node=2']
    assert osp.samefile(lines[lines.index('-u') + 1], osp.join(REPO, 'tools', 'train.py'))
    assert lines[lines.index('-u') + 3:lines.index('-u') + 8] == [
        '--launcher', 'slurm', '--work-dir', runs[0].work_dir, '--cfg-options']
    select, final = (states[r.work_dir] for r in runs)
    assert select.state == reproduce.FAILED
    assert select.log == osp.join(runs[0].work_dir, 'reproduce_train.log')
    assert 'the training ended without its final checkpoint' in select.error
    assert final.state == reproduce.BLOCKED
    with open(osp.join(runs[0].work_dir, reproduce.RUN_RECORD)) as f:
        assert json.load(f)['digest'] == runs[0].digest


def test_slurm_test_script_runs_test_py_under_srun(tmp_path):
    """tools/slurm_test.sh, which the slurm launcher tests with, as slurm_train.sh trains."""
    fake = tmp_path / 'bin' / 'srun'
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\necho "MASTER_PORT=$MASTER_PORT" > "$RECORD"\n'
                    'printf "%s\\n" "$@" >> "$RECORD"\n')
    fake.chmod(0o755)
    record = tmp_path / 'srun.txt'
    env = dict(os.environ, PATH=f'{fake.parent}:{os.environ["PATH"]}', RECORD=str(record),
               GPUS='4', GPUS_PER_NODE='4', PORT='29613', PYTHON='mypython')
    subprocess.run(['bash', osp.join(REPO, 'tools', 'slurm_test.sh'), 'gpu', 'job', 'cfg.py',
                    'w/iter_80000.pth', '--work-dir', 'w/test_tta', '--tta'], env=env,
                   check=True)
    lines = record.read_text().splitlines()
    assert lines[0] == 'MASTER_PORT=29613'
    assert lines[1:9] == ['-p', 'gpu', '--job-name=job', '--gres=gpu:4', '--ntasks=4',
                          '--ntasks-per-node=4', '--cpus-per-task=5', '--kill-on-bad-exit=1']
    assert lines[9:11] == ['mypython', '-u']
    assert osp.samefile(lines[11], osp.join(REPO, 'tools', 'test.py'))
    assert lines[12:] == ['cfg.py', 'w/iter_80000.pth', '--launcher', 'slurm', '--work-dir',
                          'w/test_tta', '--tta']


def _fake_test(work_dir, mode, metrics):
    """What tools/test.py --work-dir {work_dir}/test_{mode} leaves: its metrics file."""
    run = osp.join(work_dir, f'test_{mode}', '20260101_000000')
    os.makedirs(run)
    with open(osp.join(run, '20260101_000000.json'), 'w') as f:
        json.dump(metrics, f)


def test_segmentation_table_single_and_multi_scale_and_a_failed_seed_is_named(tmp_path):
    """Seed 0 done (its checkpoint and both tests), seed 1 failed: the mean is seed 0's, said to
    be 1 of 2 seeds, and seed 1 is listed as failed with its log."""
    runs = reproduce.plan('ade20k', methods=['davpt'], seeds=[0, 1], work_root=str(tmp_path))
    done, failed = runs
    os.makedirs(done.work_dir)
    open(done.checkpoint, 'wb').close()
    _fake_test(done.work_dir, 'ss', {'mIoU': 44.10, 'aAcc': 80.0})
    _fake_test(done.work_dir, 'tta', {'mIoU': 46.07})
    os.makedirs(failed.work_dir)
    log = osp.join(failed.work_dir, 'reproduce_train.log')
    with open(osp.join(failed.work_dir, reproduce.FAILED_RECORD), 'w') as f:
        json.dump(dict(step='train', error='RuntimeError: CUDA out of memory', log=log), f)
    result = reproduce.collect(runs, count_params=False)
    ss, ms, params = result['cells']
    assert (ss['column'], ss['ours']['mean'], ss['ours']['n'], ss['paper']) == \
        ('ss', 44.10, 1, 45.10)
    assert ss['diff'] == pytest.approx(-1.0) and ms['diff'] == pytest.approx(-1.0)
    assert ss['issues'] == [dict(task='ade20k', seed=1, stage='final', state='failed', log=log)]
    assert params['ours']['mean'] is None and params['paper'] == 13.6
    text = reproduce.format_markdown(result)
    assert re.search(r'\| in21k +\| davpt +\| single-scale mIoU +\| 44\.10 \(1 of 2 seeds\) +\| '
                     r'45\.10 +\| -1\.00 +\| seg-setr-pup-vit-l', text)
    assert re.search(r'\| multi-scale mIoU \(--tta\) +\| 46\.07 \(1 of 2 seeds\) +\| 47\.07 ',
                     text)
    assert re.search(rf'seed 1 final +\| failed +\| {re.escape(log)} +\| RuntimeError: CUDA out',
                     text)
    rows = list(csv.DictReader(reproduce.format_csv(result).splitlines()))
    assert rows[0]['issues'] == f'ade20k seed 1 final: failed (log: {log})'
    assert rows[0]['seeds_done'] == '1' and rows[0]['seeds_planned'] == '2'


# ---- a real run on a tiny VTAB-1k tree -------------------------------------------------------
@pytest.fixture(scope='module')
def real_run(tmp_path_factory):
    """``tools/reproduce.py vtab1k --methods davpt --seeds 0 --tasks patch_camelyon`` on a tiny
    tree with a tiny model, launched in this process."""
    root = tmp_path_factory.mktemp('reproduce')
    data = build_vtab1k(str(root / 'data'), tasks=[TASK], num_train=2, num_val=2, num_test=2)
    argv = ['vtab1k', '--methods', 'davpt', '--seeds', '0', '--tasks', TASK,
            '--data-root', data, '--work-root', str(root / 'work'), '--cfg-options', *TINY]
    return root, argv


def test_real_run_then_collect_prints_the_table_with_the_papers_numbers(
        tool, capsys, real_run, monkeypatch):
    root, argv = real_run
    monkeypatch.chdir(root)
    code, out, _ = run_tool(tool, capsys, *argv)
    assert code == 0
    work = root / 'work' / 'vtab1k'
    assert (work / 'results.md').read_text() in out
    # the paper's Specialized mean of DA-VPT (IN-21k) beside ours, which needs the 3 other tasks
    assert re.search(r'\| in21k +\| davpt +\| Specialized +\| incomplete +\| 85\.12 +\| - +\| '
                     r'cls-in21k-means', out)
    assert re.search(r'\| Natural +\| not planned \(--tasks\) +\| 80\.25 ', out)
    assert re.search(r'\| tunable params \(M\) +\| 0\.043 +\| 0\.21 +\| -0\.167 ', out)
    result = json.loads((work / 'results.json').read_text())
    select, final = result['runs']
    assert (select['stage'], select['state'], final['stage'], final['state']) == \
        ('select', 'done', 'final', 'done')
    assert 0 <= final['metrics']['ss'] <= 100 and select['metrics']['val_epoch'] == 1
    task_cell, = (c for c in result['cells'] if c['column'] == TASK)
    assert task_cell['ours']['per_seed'] == {'0': final['metrics']['ss']}
    assert re.search(rf'\| in21k +\| davpt +\| {TASK} +\| {final["metrics"]["ss"]:.2f} +\| '
                     rf'0:{final["metrics"]["ss"]:.2f} +\| 0:', out)
    with open(work / 'results.csv') as f:
        rows = {r['column']: r for r in csv.DictReader(f)}
    assert rows['specialized']['paper'] == '85.1200' and rows['specialized']['ours'] == \
        'incomplete'
    assert f'{TASK} seed 0' not in rows['specialized']['issues']  # done
    assert 'eurosat seed 0 final: not planned' in rows['specialized']['issues']
    # the final run trained on train800val200 (2 + 2 images) and was tested once, on test
    final_dir = final['work_dir']
    dumped = open(osp.join(final_dir, f'{osp.basename(osp.dirname(final_dir))}.py')).read()
    assert "split='train800val200'" in dumped and "val_dataloader = None" in dumped
    assert os.listdir(osp.join(final_dir, 'test_ss'))
    assert not osp.exists(osp.join(select['work_dir'], 'test_ss'))

    # the same merged config, its options in another order: done, nothing runs again
    reordered = argv[:argv.index('--cfg-options') + 1] + TINY[::-1]
    before = {d: sorted(os.listdir(d)) for d in (select['work_dir'], final_dir)}
    code, out, _ = run_tool(tool, capsys, *reordered)
    assert code == 0
    assert out.count('done before') == 2 and 'train: ' not in out
    assert {d: sorted(os.listdir(d)) for d in before} == before
    # another merged config is another run, in its own work dir
    other = reproduce.plan('vtab1k', methods=['davpt'], seeds=[0], tasks=[TASK],
                           data_root=argv[argv.index('--data-root') + 1],
                           work_root=str(root / 'work'),
                           cfg_options=TINY + ['model.head.loss.loss_weight=0.5'])
    assert [r.work_dir for r in other] != [select['work_dir'], final_dir]
    assert all(reproduce.run_state(r).state == reproduce.NOT_RUN for r in other)

    code, collected, _ = run_tool(tool, capsys, *argv, '--collect')
    assert code == 0 and collected.startswith(out[out.index('# vtab1k: ours'):].split(
        'written:')[0])


def test_a_failed_run_is_reported_as_failed_with_its_log(tool, capsys, real_run, monkeypatch):
    root, argv = real_run
    monkeypatch.chdir(root)
    argv = [a if a != TASK else 'kitti' for a in argv]  # not in the tree: its training fails
    argv[argv.index('--work-root') + 1] = str(root / 'work_failed')
    code, out, _ = run_tool(tool, capsys, *argv)
    assert code == 0
    assert 'select: train FAILED: FileNotFoundError' in out
    result = json.loads((root / 'work_failed' / 'vtab1k' / 'results.json').read_text())
    select, final = result['runs']
    assert select['state'] == 'failed' and 'kitti/train800.txt' in select['error']
    assert osp.isfile(select['log']) and select['log'].endswith('.log')
    assert final['state'] == reproduce.BLOCKED
    kitti, = (c for c in result['cells'] if c['column'] == 'kitti')
    assert kitti['ours']['n'] == 0 and kitti['issues'][0]['state'] == 'failed'
    assert re.search(r'\| in21k +\| davpt +\| kitti +\| failed ', out)
    assert re.search(r'\| in21k +\| davpt +\| Structured +\| failed +\| 58\.71 ', out)
    assert re.search(rf'\| vit-b16-in21k_davpt_vtab-kitti seed 0 select +\| failed +\| '
                     rf'{re.escape(select["log"])} +\| FileNotFoundError: split file not found',
                     out)
    assert re.search(r'\| vit-b16-in21k_davpt_vtab-kitti seed 0 final +\| not run \(its '
                     r'selection run did not finish\) +\| - ', out)


# ---- the paper's numbers ---------------------------------------------------------------------
def test_the_papers_numbers_agree_with_their_own_means():
    """FGVC per dataset averages to the FGVC mean, VTAB's groups to the VTAB mean, for every
    method the paper gives both for; every entry names a table of the file."""
    paper = reproduce.load_paper_results()
    values = {(r['benchmark'], r['pretrain'], r['method'], r['column']): r['value']
              for r in paper['results']}
    assert len(values) == len(paper['results'])
    assert all(r['table'] in paper['tables'] and r['method'] in paper['methods']
               for r in paper['results'])
    checked = 0
    for method in ('vpt-deep', 'davpt', 'davpt-plus'):
        per_dataset = [values[('fgvc', 'in21k', method, d)] for d in FGVC_DATASETS]
        # per dataset to 0.1, the mean to 0.01
        assert sum(per_dataset) / 5 == pytest.approx(values[('fgvc', 'in21k', method, 'mean')],
                                                     abs=0.05)
        checked += 1
    for method in ('full', 'vpt-deep', 'davpt', 'davpt-plus'):
        groups = [values[('vtab1k', 'in21k', method, g)] for g in VTAB_GROUPS]
        assert sum(groups) / 3 == pytest.approx(values[('vtab1k', 'in21k', method, 'mean')],
                                                abs=0.01)
        checked += 1
    assert checked == 7

