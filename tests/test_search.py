import logging
import os.path as osp
import re

import optuna
import pytest
from mmengine.config import Config

from mmdavpt_lab.search import Objective, build_pruner, default_metric, parse_param, parse_space

from conftest import load_tool, write_tiny_config


# ---- the space -----------------------------------------------------------------------------
def test_parse_space_aliases_kinds_and_errors():
    params = parse_space(['beta=loguniform:0.01:1 lam=uniform:0.0:0.5',
                          'num_guided_prompts=int:2:10', 'model.backbone.num_prompts=choice:1,3'])
    assert [(p.key, p.kind) for p in params] == [
        ('model.guidance.loss_xp.loss_weight', 'loguniform'),
        ('model.guidance.loss_pcls.loss_weight', 'uniform'),
        ('model.backbone.num_guided_prompts', 'int'),
        ('model.backbone.num_prompts', 'choice')]
    assert params[0].low == 0.01 and params[2].high == 10 and params[3].choices == (1, 3)
    assert parse_param('lr=loguniform:1e-4:1e-2').high == pytest.approx(1e-2)
    for bad in ('lr', 'lr=normal:0:1', 'lr=loguniform:0:1', 'lr=uniform:2:1', 'lr=int:a:b',
                'lr=uniform:1', 'bad-key=uniform:0:1', 'x=choice:'):
        with pytest.raises(ValueError):
            parse_param(bad)
    with pytest.raises(ValueError, match='more than once'):
        parse_space('wd=uniform:0:1 weight_decay=uniform:0:1')


def test_default_metric_and_pruners():
    assert default_metric(Config(dict(default_scope='mmseg'))) == 'mIoU'
    assert default_metric(Config(dict(default_scope='mmpretrain'))) == 'accuracy/top1'
    assert default_metric(Config(dict(default_hooks=dict(checkpoint=dict(
        save_best='accuracy/top5'))))) == 'accuracy/top5'
    assert isinstance(build_pruner('median:1:2'), optuna.pruners.MedianPruner)
    assert isinstance(build_pruner('threshold:50'), optuna.pruners.ThresholdPruner)
    assert isinstance(build_pruner('none'), optuna.pruners.NopPruner)
    with pytest.raises(ValueError):
        build_pruner('hyper')


# ---- whole searches --------------------------------------------------------------------------
SPACE = ['beta=loguniform:0.01:1 lam=loguniform:0.01:1 lr=loguniform:1e-3:3e-2 '
         'num_guided_prompts=int:2:3']


def _study(storage, name):
    return optuna.load_study(study_name=name, storage=storage)


def test_search_runs_trials_resumes_and_writes_a_loadable_best_config(tmp_path):
    search = load_tool('tools/search.py')
    config = write_tiny_config(tmp_path)
    storage = f'sqlite:///{tmp_path}/search.db'
    work_dir = str(tmp_path / 'search')
    argv = [config, '--space', *SPACE, '--storage', storage, '--study-name', 'tiny',
            '--work-dir', work_dir, '--pruner', 'none']
    best = search.main([*argv, '--trials', '2'])
    study = _study(storage, 'tiny')
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    # each trial trained in its own work dir, validated on val200 and never tested
    for t in study.trials:
        assert 0 <= t.value <= 100 and sorted(t.intermediate_values) == [1, 2]
        assert t.value == max(t.intermediate_values.values())
        assert osp.isdir(t.user_attrs['work_dir'])
        assert 2 <= t.params['num_guided_prompts'] <= 3
    # resume: the same study gets one more trial, the first two are not re-run
    best = search.main([*argv, '--trials', '3'])
    study = _study(storage, 'tiny')
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert osp.isdir(osp.join(work_dir, 'trial_2'))
    assert search.main([*argv, '--trials', '3']) == best  # complete: nothing to run
    assert len(_study(storage, 'tiny').trials) == 3
    # the best config: the original config with the best values, ready for tools/train.py
    cfg = Config.fromfile(best)
    values = study.best_trial.params
    assert cfg.model.guidance.loss_xp.loss_weight == pytest.approx(values['beta'])
    assert cfg.model.guidance.loss_pcls.loss_weight == pytest.approx(values['lam'])
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(values['lr'])
    assert cfg.model.backbone.num_guided_prompts == values['num_guided_prompts']
    assert cfg.test_dataloader.dataset.split == 'test'  # the trials' test removal is not in it
    assert 'experiment_name' not in cfg and 'work_dir' not in cfg


def test_pruned_trial_stops_at_its_first_validation(tmp_path):
    search = load_tool('tools/search.py')
    config = write_tiny_config(tmp_path, max_epochs=3)
    storage = f'sqlite:///{tmp_path}/search.db'
    # accuracy is at most 100: a threshold above it prunes every trial at its first validation
    path = search.main([config, '--space', 'lr=loguniform:1e-3:1e-2', '--trials', '1',
                        '--storage', storage, '--work-dir', str(tmp_path / 'search'),
                        '--pruner', 'threshold:101'])
    assert path is None
    (trial, ) = _study(storage, 'tiny_davpt').trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]  # epoch 1 of 3, then stopped
    ckpts = {osp.basename(p) for p in (tmp_path / 'search' / 'trial_0').glob('*.pth')}
    assert 'epoch_1.pth' in ckpts and 'epoch_2.pth' not in ckpts


def test_space_keys_missing_from_the_config_are_an_error(tmp_path):
    search = load_tool('tools/search.py')
    config = write_tiny_config(tmp_path, guidance=False, num_guided_prompts=0)
    with pytest.raises(KeyError, match='without DA-VPT guidance'):
        search.main([config, '--space', 'beta=loguniform:0.01:1', '--trials', '1',
                     '--work-dir', str(tmp_path / 'search')])


def test_a_diverging_trial_counts_as_pruned(tmp_path):
    class DivergingRunner:  # what check_finite_losses makes of a too large learning rate
        logger = logging.getLogger('diverging')
        visualizer = None

        def register_hook(self, hook):
            pass

        def train(self):
            raise FloatingPointError('non-finite loss at iteration 3: {\'loss\': nan}')

    cfg = Config.fromfile(write_tiny_config(tmp_path))
    objective = Objective(cfg, parse_space('lr=loguniform:1e-3:1e-2'), str(tmp_path),
                          'accuracy/top1', build_runner=lambda cfg: DivergingRunner())
    study = optuna.create_study(direction='maximize')
    study.optimize(objective, n_trials=2)  # the study goes on after it
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert 'non-finite' in study.trials[0].user_attrs['pruned_reason']


def test_storage_opens_again_when_another_search_created_it_at_the_same_time(tmp_path,
                                                                              monkeypatch):
    """Two searches starting together on a new SQLite file: the loser's schema insert fails with
    an IntegrityError; it opens the (now complete) database again instead of crashing."""
    import optuna
    from sqlalchemy.exc import IntegrityError

    from mmdavpt_lab.search.study import open_storage
    real = optuna.storages.RDBStorage
    calls = []

    def racing(url, **kwargs):
        calls.append(url)
        if len(calls) == 1:
            real(url, **kwargs)  # the other process wins the race...
            raise IntegrityError('INSERT INTO alembic_version', {}, Exception('UNIQUE'))
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, 'RDBStorage', racing)
    url = f'sqlite:///{tmp_path}/search.db'
    storage = open_storage(url, heartbeat=None)
    assert len(calls) == 2 and storage.get_all_studies() == []


class _FakeRunner:
    """A trial's runner whose training ends with one validation of 50 %."""
    logger = logging.getLogger('fake_trial')
    visualizer = None

    def register_hook(self, hook):
        self.hook = hook

    def train(self):
        self.hook.best = 50.0


def test_a_study_of_another_search_is_not_resumed(tmp_path):
    """Another config (or an edited one), other --trial-options, space, metric or direction on
    an existing study name ran 0 trials and wrote a best config of the new config with the old
    trials' values and score; now refused, naming what differs."""
    from mmdavpt_lab.search import run_search
    cfg = Config.fromfile(write_tiny_config(tmp_path))
    storage = f'sqlite:///{tmp_path}/search.db'
    space = parse_space('lr=loguniform:1e-3:1e-2')
    kwargs = dict(storage=storage, study_name='s', heartbeat=None,
                  build_runner=lambda cfg: _FakeRunner())
    work_dir = str(tmp_path / 'search')
    run_search(cfg, space, 1, work_dir, **kwargs)
    assert len(run_search(cfg, space, 2, work_dir, **kwargs).trials) == 2  # the same: resumed
    edited = Config.fromfile(cfg.filename)
    edited.optim_wrapper.optimizer.weight_decay = 0.5
    where = re.escape(storage)
    with pytest.raises(ValueError, match=rf"the study 's' in {where} holds 2 trial\(s\) of "
                       r'another search \(config_digest: another config -> this config\): '
                       r'resuming it would count them .* another --study-name'):
        run_search(edited, space, 3, work_dir, **kwargs)
    with pytest.raises(ValueError, match='config_digest: another config'):
        run_search(cfg, space, 3, work_dir, trial_options={'train_cfg.max_epochs': 1},
                   **kwargs)
    with pytest.raises(ValueError, match=r"space: \['lr=optim_wrapper\.optimizer\.lr'\] -> "
                       r"\['lam=model\.guidance\.loss_pcls\.loss_weight'\]"):
        run_search(cfg, parse_space('lam=uniform:0:1'), 3, work_dir, **kwargs)
    with pytest.raises(ValueError, match=r"metric: 'accuracy/top1' -> 'accuracy/top5'"):
        run_search(cfg, space, 3, work_dir, metric='accuracy/top5', **kwargs)
    with pytest.raises(ValueError, match=r"direction: 'maximize' -> 'minimize'"):
        run_search(cfg, space, 3, work_dir, direction='minimize', **kwargs)
    assert len(_study(storage, 's').trials) == 2


def test_storage_must_be_a_url(tmp_path, capsys):
    search = load_tool('tools/search.py')
    with pytest.raises(SystemExit):
        search.parse_args(['c.py', '--trials', '1', '--space', 'lr=uniform:0:1', '--storage',
                           'work_dirs/search.db'])
    assert ('--storage work_dirs/search.db is not a database URL: for a SQLite file write '
            '--storage sqlite:///work_dirs/search.db') in capsys.readouterr().err
