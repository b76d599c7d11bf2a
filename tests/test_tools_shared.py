"""What the tools share through the package (mmdavpt.utils): tables, tunable-parameter counts, the
work-directory reader and its config ownership checks, the CLI option merging, the state-dict key
check, the memory-measuring processes; and the hooks every run gets from the runtime bases."""
import json
import os
import os.path as osp
import shutil
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from mmdavpt.engine.hooks import ConfigGuardHook, RNGStateHook
from mmdavpt.registry import build_model
from mmdavpt.utils import cli
from mmdavpt.utils.ckpt_convert import compare_state_dicts
from mmdavpt.utils.memory import MALLOC_ENV, measuring_pool
from mmdavpt.utils.params import count_config_tunable, count_tunable, strip_init_cfg
from mmdavpt.utils.table import format_table
from mmdavpt.utils.workdir import (
    WorkDirConflict,
    check_work_dir_owner,
    find_config,
    read_work_dir,
    run_name,
)

from conftest import REPO, load_tool, tiny_classifier_cfg, write_tiny_config

CLS_RUNTIME = osp.join(REPO, 'configs', '_base_', 'default_runtime_cls.py')


# ---- tables and parameter counts -------------------------------------------------------------
def test_format_table_markdown_and_csv():
    header, rows = ['Method', 'Top-1'], [['VPT', '91.20'], ['DA-VPT+', '93.0']]
    assert format_table(header, rows) == ('| Method  | Top-1 |\n'
                                          '|---------|-------|\n'
                                          '| VPT     | 91.20 |\n'
                                          '| DA-VPT+ | 93.0  |')
    assert format_table(header, rows, fmt='csv') == 'Method,Top-1\nVPT,91.20\nDA-VPT+,93.0'
    with pytest.raises(ValueError, match='fmt'):
        format_table(header, rows, fmt='tex')
    with pytest.raises(ValueError, match='2 cells'):
        format_table(header, [['VPT']])


def test_tunable_counts_of_a_model_and_of_its_config():
    cfg = tiny_classifier_cfg(num_classes=5)
    cfg['backbone']['init_cfg'] = dict(type='Pretrained', checkpoint='nowhere.pth')
    assert 'init_cfg' not in strip_init_cfg(cfg)['backbone']
    model = build_model(strip_init_cfg(cfg))
    expected = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # 3 prompts in layers 1-2 + 2 guided in layer 3, 32 wide; the head 32 -> 5
    assert count_tunable(model) == expected == (3 * 2 + 2) * 32 + 32 * 5 + 5
    assert count_config_tunable(cfg) == expected  # built on meta: the checkpoint is not read


# ---- the key check ---------------------------------------------------------------------------
def test_compare_state_dicts():
    own = {'a': torch.zeros(2), 'b': torch.zeros(3), 'frozen': torch.zeros(1),
           'pos': torch.zeros(4)}
    loaded = {'a': torch.zeros(2), 'b': torch.zeros(5), 'extra': torch.zeros(1),
              'pos': torch.zeros(9)}
    mismatch = compare_state_dicts(own, loaded, allowed_missing=['frozen'], shape_exempt=['pos'])
    assert mismatch and mismatch.missing == [] and mismatch.unexpected == ['extra']
    assert mismatch.shapes == ['b (5,) vs (3,)']
    assert mismatch.describe() == ("1 unexpected keys: ['extra']; 1 shape mismatches "
                                   "(checkpoint vs model): ['b (5,) vs (3,)']")
    assert compare_state_dicts(own, {**own, 'frozen': 1}).missing == []
    assert compare_state_dicts(own, {'a': own['a']}).missing == ['b', 'frozen', 'pos']
    assert not compare_state_dicts(own, dict(own))


# ---- work directories ------------------------------------------------------------------------
def _fake_work_dir(tmp_path) -> str:
    """A work dir as train + test of tiny_davpt.py leave it (scalars, metrics, run configs)."""
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    shutil.copy(write_tiny_config(tmp_path), work_dir / 'tiny_davpt.py')
    train = work_dir / '20260101_000000' / 'vis_data'
    train.mkdir(parents=True)
    rows = [dict(loss=1.0, time=2.0, step=1), dict(loss=0.5, time=0.4, step=2),
            {'accuracy/top1': 40.0, 'step': 1}, {'accuracy/top1': 60.0, 'step': 2},
            {'accuracy/top1': 60.0, 'step': 3}]
    (train / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
    for stamp, checkpoint, top1 in (('20260101_000100', 'best_accuracy_top1_epoch_2.pth', 55.0),
                                    ('20260101_000200', 'epoch_3.pth', 57.0)):
        run = work_dir / stamp
        (run / 'vis_data').mkdir(parents=True)
        (run / f'{stamp}.json').write_text(json.dumps({'accuracy/top1': top1}) + '\n')
        (run / 'vis_data' / 'config.py').write_text(
            f"load_from = '{work_dir / checkpoint}'\n")
    return str(work_dir)


def test_read_work_dir(tmp_path):
    work_dir = _fake_work_dir(tmp_path)
    result = read_work_dir(work_dir, count_params=False)
    # the later test of epoch_3.pth is not the val-selected one: the best_* test is reported
    assert (result.test_top1, osp.basename(result.test_checkpoint)) == (
        55.0, 'best_accuracy_top1_epoch_2.pth')
    assert result.selected_by_val and (result.best_val_top1, result.best_val_epoch) == (60.0, 2)
    assert result.sec_per_step == pytest.approx(0.4)  # the first log window is left out
    assert (result.row, result.task, result.tunable_params) == ('tiny_davpt', 'tiny_task', None)
    assert read_work_dir(work_dir).tunable_params == (3 * 2 + 2) * 32 + 32 * 5 + 5


def test_a_work_dir_of_two_configs_is_refused(tmp_path, capsys):
    work_dir = _fake_work_dir(tmp_path)
    shutil.copy(osp.join(work_dir, 'tiny_davpt.py'), osp.join(work_dir, 'other_config.py'))
    with pytest.raises(WorkDirConflict, match=r'other_config\.py, tiny_davpt\.py.*--work-dir'):
        find_config(work_dir)
    with pytest.raises(WorkDirConflict):
        read_work_dir(work_dir, count_params=False)
    # the results table skips it with the message instead of showing one config's numbers
    # under the other's name
    assert load_tool('tools/analysis/results_table.py').main([work_dir, '--no-params']) == 1
    err = capsys.readouterr().err
    assert 'skipped' in err and 'other_config.py' in err and 'no results found' in err


def test_check_work_dir_owner(tmp_path):
    check_work_dir_owner(str(tmp_path / 'missing'), name='a')  # nothing there yet
    torch.save(dict(meta=dict(experiment_name='tiny_davpt_20260101_000000'), state_dict={}),
               tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict={}), tmp_path / 'converted_backbone.pth')  # not a run's: ignored
    check_work_dir_owner(str(tmp_path), name='tiny_davpt')
    with pytest.raises(WorkDirConflict, match=r'tiny_davpt.*epoch_1\.pth.*another --work-dir '
                                               r'for other'):
        check_work_dir_owner(str(tmp_path), name='other')
    config = write_tiny_config(tmp_path)
    assert run_name(Config.fromfile(config)) == 'tiny_davpt'
    assert run_name(Config(dict(experiment_name='exp'))) == 'exp'


def test_train_cli_refuses_another_configs_work_dir_but_resumes_its_own(tmp_path):
    train = load_tool('tools/train.py')
    config = write_tiny_config(tmp_path, guidance=False, num_guided_prompts=0)
    work_dir = str(tmp_path / 'work')
    train.main([config, '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_epochs=1'])
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    # the same config resumes in its own work dir
    train.main([config, '--work-dir', work_dir, '--resume', '--cfg-options',
                'train_cfg.max_epochs=2'])
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    # another config is refused before anything is written
    other = str(tmp_path / 'other.py')
    shutil.copy(config, other)
    before = sorted(os.listdir(work_dir))
    with pytest.raises(WorkDirConflict, match=r'\(tiny_davpt, e\.g\. .*training other there'):
        train.main([other, '--work-dir', work_dir])
    assert sorted(os.listdir(work_dir)) == before


# ---- the CLI options and the runtime hooks ---------------------------------------------------
def _with_cls_runtime(tmp_path) -> str:
    """The tiny config on top of mmdavpt's classification runtime base."""
    text = Config.fromfile(write_tiny_config(tmp_path)).pretty_text
    path = tmp_path / 'tiny_on_runtime.py'
    path.write_text(f'_base_ = [{CLS_RUNTIME!r}]\n' + text)
    return str(path)


def test_runtime_base_gives_every_runner_the_hooks_once(tmp_path):
    cfg = Config.fromfile(_with_cls_runtime(tmp_path))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.experiment_name = 'runtime_hooks'
    runner = Runner.from_cfg(cfg)  # as mim / a script would: no mmdavpt CLI involved
    types = [type(h) for h in runner.hooks]
    assert types.count(ConfigGuardHook) == 1 and types.count(RNGStateHook) == 1

    merged = cli.merge_train_args(Config.fromfile(_with_cls_runtime(tmp_path)),
                                  allow_config_change=True)
    assert [h['type'] for h in merged.custom_hooks] == ['SemanticMappingHook']
    assert merged.default_hooks.config_guard == dict(type='ConfigGuardHook',
                                                     allow_config_change=True)
    assert merged.work_dir == osp.join('./work_dirs', 'tiny_on_runtime')


def test_cli_adds_the_hooks_to_configs_without_the_runtime_base(tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(cli, 'print_log', lambda msg, **kwargs: logged.append(msg))
    cfg = cli.merge_train_args(Config.fromfile(write_tiny_config(tmp_path)),
                               work_dir=str(tmp_path / 'w'), amp=True, resume='ck.pth')
    assert [h['type'] for h in cfg.custom_hooks] == ['SemanticMappingHook', 'ConfigGuardHook',
                                                     'RNGStateHook']
    assert len(logged) == 2 and all('added to custom_hooks' in m for m in logged)
    assert cfg.optim_wrapper.type in ('AmpOptimWrapper', 'CPUAmpOptimWrapper')
    assert cfg.resume is True and cfg.load_from == 'ck.pth' and cfg.work_dir == str(tmp_path / 'w')


# ---- RNGStateHook follows CheckpointHook's save rule -----------------------------------------
@pytest.mark.parametrize('interval', [1, 3, -1])
@pytest.mark.parametrize('save_begin', [0, 4])
@pytest.mark.parametrize('save_last', [True, False])
def test_rng_state_hook_predicts_the_checkpoint_hook(interval, save_begin, save_last):
    """``RNGStateHook._checkpoint_due`` is a copy of CheckpointHook's iteration rule: it must say
    yes exactly where MMEngine's hook saves."""
    hook = CheckpointHook(interval=interval, by_epoch=False, save_begin=save_begin,
                          save_last=save_last)
    saved = []
    hook._save_checkpoint = lambda runner: saved.append(runner.iter)
    runner = SimpleNamespace(max_iters=10, hooks=[hook], logger=MMLogger.get_current_instance())
    due = []
    for it in range(runner.max_iters):
        runner.iter = it
        if RNGStateHook()._checkpoint_due(runner):
            due.append(it)
        hook.after_train_iter(runner, batch_idx=it)
    assert due == saved
    assert saved or (interval == -1 and not save_last)


def test_rng_state_hook_ignores_epoch_based_checkpoints():
    runner = SimpleNamespace(iter=0, max_iters=1, hooks=[CheckpointHook(interval=1)])
    assert not RNGStateHook()._checkpoint_due(runner)


# ---- memory ----------------------------------------------------------------------------------
def test_measuring_pool_runs_each_task_in_a_fresh_process_with_the_malloc_env():
    before = {k: os.environ.get(k) for k in MALLOC_ENV}
    with measuring_pool(preload=['os']) as pool:
        values = [pool.apply(os.getenv, (k, )) for k in MALLOC_ENV]
        pids = {pool.apply(os.getpid) for _ in range(2)}
    assert values == list(MALLOC_ENV.values())
    assert len(pids) == 2 and os.getpid() not in pids
    assert {k: os.environ.get(k) for k in MALLOC_ENV} == before  # this process is unchanged
