"""Hyperparameter search over MMEngine runs with Optuna (the engine of ``tools/search.py``).

Every trial is an ordinary training run of the config (its own work dir, the normal Runner and
hooks) with the sampled values set at their config keys. The trial's value is the best value of
the validation metric over the run (what ``save_best`` selects); the test split is removed from
trial configs, so a search cannot select on it. Bad trials are stopped at a validation by the
study's pruner (:class:`OptunaPruningHook`); a run that hits a non-finite loss counts as pruned.
With a storage URL (``sqlite:///search.db``) the study outlives the process: running the same
command again continues it until it has ``n_trials`` finished trials; a study of another
config, space, metric or direction is refused (:func:`check_study`).
"""
import copy
import logging
import os.path as osp
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import optuna
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from optuna.trial import TrialState

from mmdavpt_lab.compare import config_digest

from .pruning_hook import OptunaPruningHook
from .space import SearchParam, check_space

#: Trial states that count towards ``n_trials``: a failed trial (an error, Ctrl-C) does not.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def default_metric(cfg: Config) -> str:
    """The config's own model-selection metric (``save_best``), else the upstream default."""
    save_best = cfg.get('default_hooks', {}).get('checkpoint', {}).get('save_best')
    if isinstance(save_best, str) and save_best != 'auto':
        return save_best
    return 'mIoU' if cfg.get('default_scope') == 'mmseg' else 'accuracy/top1'


def build_pruner(spec: str) -> optuna.pruners.BasePruner:
    """``'median'``, ``'median:STARTUP_TRIALS:WARMUP_STEPS'``, ``'threshold:LOWER'`` or ``'none'``.

    ``median`` stops a trial whose metric at a step is below the median of the earlier trials at
    that step (after 3 finished trials, from the first validation on by default).
    ``threshold:LOWER`` stops a trial as soon as its metric is below LOWER (e.g. chance level).
    """
    kind, _, args = spec.partition(':')
    parts = [a for a in args.split(':') if a]
    if kind == 'none' and not parts:
        return optuna.pruners.NopPruner()
    if kind == 'median' and len(parts) in (0, 2):
        startup, warmup = (int(p) for p in parts) if parts else (3, 0)
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if kind == 'threshold' and len(parts) == 1:
        return optuna.pruners.ThresholdPruner(lower=float(parts[0]))
    raise ValueError(f"unknown pruner {spec!r}: use 'median', 'median:STARTUP:WARMUP', "
                     "'threshold:LOWER' or 'none'")


def open_storage(url: Optional[str], heartbeat: Optional[int] = 60):
    """An Optuna storage for ``url`` (``None``: in memory, not resumable).

    With a database URL, running trials send a heartbeat every ``heartbeat`` seconds; a trial whose
    process died (killed, power loss) is marked failed by the next run after two missed beats and
    retried once with the same parameters.
    """
    if url is None:
        return None
    from sqlalchemy.exc import IntegrityError
    with warnings.catch_warnings():  # the heartbeat is an "experimental" Optuna feature
        warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
        kwargs = {} if heartbeat is None else dict(
            heartbeat_interval=heartbeat,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1))
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except IntegrityError:
            # Two searches that start together on a new database both create its tables; the
            # second one's insert of the schema version fails. The tables exist now: open again.
            time.sleep(1.0)
            return optuna.storages.RDBStorage(url, **kwargs)


def trial_config(cfg: Config, overrides: Dict[str, object], work_dir: str,
                 experiment_name: str, trial_options: Optional[dict] = None) -> Config:
    """The config of one trial: ``overrides`` ({config key: value}) set, no test split."""
    out = copy.deepcopy(cfg)
    if trial_options:
        out.merge_from_dict(trial_options)
    out.merge_from_dict(overrides)
    out.work_dir = work_dir
    # Unique per trial: MMEngine's logger, message hub and visualizer are global instances looked
    # up by this name, and two runners started in the same second would otherwise share them.
    out.experiment_name = experiment_name
    out.resume = False
    for key in ('test_dataloader', 'test_cfg', 'test_evaluator'):
        out[key] = None
    return out


def _release(runner: Runner) -> None:
    """Close what a runner leaves open when training ends with an exception."""
    for handler in list(runner.logger.handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            runner.logger.removeHandler(handler)
    for backend in getattr(runner.visualizer, '_vis_backends', {}).values():
        backend.close()


@dataclass
class Objective:
    """Run one trial: sample, train with the normal runner, return the best val metric."""
    cfg: Config
    params: Sequence[SearchParam]
    work_dir: str
    metric: str
    greater_is_better: bool = True
    trial_options: Optional[dict] = None
    prepare: Callable[[Config], Config] = lambda cfg: cfg
    build_runner: Callable[[Config], Runner] = Runner.from_cfg

    def __call__(self, trial: optuna.Trial) -> float:
        values = {p.name: p.suggest(trial) for p in self.params}
        overrides = {p.key: values[p.name] for p in self.params}
        trial_dir = osp.join(self.work_dir, f'trial_{trial.number}')
        trial.set_user_attr('config_overrides', overrides)
        trial.set_user_attr('work_dir', trial_dir)
        name = f'{trial.study.study_name}_trial_{trial.number}'
        cfg = self.prepare(trial_config(self.cfg, overrides, trial_dir, name, self.trial_options))
        runner = self.build_runner(cfg)
        hook = OptunaPruningHook(trial, self.metric, self.greater_is_better)
        runner.register_hook(hook)
        try:
            runner.train()
        except FloatingPointError as e:  # a diverging trial (e.g. too large a lr) is a bad one
            trial.set_user_attr('pruned_reason', str(e))
            raise optuna.TrialPruned(str(e)) from e
        finally:
            _release(runner)
        if hook.best is None:
            raise RuntimeError('the trial ran no validation: check train_cfg.val_interval')
        return hook.best


def check_val(cfg: Config) -> None:
    missing = [k for k in ('val_dataloader', 'val_evaluator', 'val_cfg') if cfg.get(k) is None]
    if missing:
        raise ValueError(f'the search optimises the validation metric, but the config has no '
                         f'{missing}')


def study_identity(cfg: Config, params: Sequence[SearchParam], metric: str, direction: str,
                   trial_options: Optional[dict] = None,
                   prepare: Callable[[Config], Config] = lambda cfg: cfg) -> Dict[str, object]:
    """What a study's trials are runs of, recorded in the study (``user_attrs``): the space
    (names and config keys), the metric, the direction and ``config_digest``, the digest of a
    trial's config before the sampled values are set (the config with ``--cfg-options``, the
    ``trial_options`` and what ``prepare`` adds, e.g. ``--amp``)."""
    trial_cfg = prepare(trial_config(cfg, {}, 'WORK_DIR', 'TRIAL', trial_options))
    return dict(space=[f'{p.name}={p.key}' for p in params], metric=metric, direction=direction,
                config_digest=config_digest(trial_cfg))


def check_study(study: optuna.Study, identity: Dict[str, object],
                storage: Optional[str]) -> None:
    """Refuse to continue a study whose trials are runs of something else: another config (or
    an edited one, or other ``--cfg-options`` / ``--trial-options``), another space, metric or
    direction. Its trials would count towards ``n_trials`` and its best trial's values and score
    would be written into the best config of this one.

    Raises:
        ValueError: naming what differs and the way out (another study name).
    """
    if not study.get_trials(deepcopy=False):
        return
    recorded = {k: study.user_attrs.get(k) for k in identity}
    differ = [k for k in identity if recorded[k] != identity[k]]
    if not differ:
        return
    shown = '; '.join(
        f'{k}: {"another config" if k == "config_digest" else repr(recorded[k])} -> '
        f'{"this config" if k == "config_digest" else repr(identity[k])}'
        if recorded[k] is not None else f'{k}: not recorded (an older mmdavpt ran it)'
        for k in differ)
    raise ValueError(
        f'the study {study.study_name!r} in {storage} holds {len(study.trials)} trial(s) of '
        f'another search ({shown}): resuming it would count them and could name one of them the '
        f'best of this search. Give this search another --study-name (or another --storage).')


def run_search(cfg: Config,
               params: List[SearchParam],
               n_trials: int,
               work_dir: str,
               storage: Optional[str] = None,
               study_name: Optional[str] = None,
               metric: Optional[str] = None,
               direction: str = 'maximize',
               pruner: str = 'median',
               seed: Optional[int] = 0,
               heartbeat: Optional[int] = 60,
               trial_options: Optional[dict] = None,
               prepare: Callable[[Config], Config] = lambda cfg: cfg,
               build_runner: Callable[[Config], Runner] = Runner.from_cfg) -> optuna.Study:
    """Run (or continue) a study until it has ``n_trials`` finished trials.

    Args:
        cfg: the training config (its test split is never used).
        params: the space, from :func:`~mmdavpt_lab.search.parse_space`.
        n_trials: finished (complete or pruned) trials the study should have; a study loaded
            from ``storage`` runs only the missing ones.
        work_dir: trial ``k`` trains in ``{work_dir}/trial_{k}``.
        storage: Optuna storage URL, e.g. ``'sqlite:///work_dirs/search.db'``; ``None`` keeps
            the study in memory.
        study_name: defaults to the config's file name.
        metric: validation metric key; defaults to :func:`default_metric`.
        direction: ``'maximize'`` (accuracy, mIoU) or ``'minimize'``.
        pruner: see :func:`build_pruner`.
        seed: seed of the TPE sampler.
        heartbeat: seconds between heartbeats of running trials (database storages).
        trial_options: config overrides for the trials only (e.g. a shorter schedule).
        prepare: applied to each trial config before the runner is built (``tools/search.py``
            passes the config handling of ``tools/train.py``).
        build_runner: builds the runner of a trial.

    Raises:
        ValueError: the study in ``storage`` holds trials of another search (:func:`check_study`),
            or a bad ``direction`` / config.
    """
    check_val(cfg)
    check_space(cfg, params)
    if direction not in ('maximize', 'minimize'):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    metric = metric or default_metric(cfg)
    study_name = study_name or osp.splitext(osp.basename(cfg.filename or 'search'))[0]
    study = optuna.create_study(
        storage=open_storage(storage, heartbeat), study_name=study_name, direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed), pruner=build_pruner(pruner),
        load_if_exists=True)
    identity = study_identity(cfg, params, metric, direction, trial_options, prepare)
    check_study(study, identity, storage)
    for key, value in identity.items():
        study.set_user_attr(key, value)
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    remaining = n_trials - done
    logger = MMLogger.get_current_instance()
    logger.info(f'Optuna study {study_name!r}: {done} finished trials, {max(remaining, 0)} to '
                f'run, optimising {direction} val {metric}')
    if remaining > 0:
        objective = Objective(cfg, params, work_dir, metric, direction == 'maximize',
                              trial_options, prepare, build_runner)
        study.optimize(objective, n_trials=remaining,
                       callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=FINISHED)])
    return study


def write_best_config(study: optuna.Study, cfg: Config, path: str) -> str:
    """Dump ``cfg`` with the best trial's values set: a config ready for ``tools/train.py``."""
    best = study.best_trial
    out = copy.deepcopy(cfg)
    out.merge_from_dict(best.user_attrs['config_overrides'])
    out.dump(path)
    metric = study.user_attrs.get('metric', 'value')
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    header = [
        f'# Best trial of the Optuna study {study.study_name!r} (tools/search.py):',
        f'# trial {best.number} of {finished}, val {metric} = {best.value:.4f}, trained in',
        f'# {best.user_attrs.get("work_dir")}; searched values:',
        *(f'#   {k} = {v!r}' for k, v in best.user_attrs['config_overrides'].items()),
    ]
    with open(path) as f:
        text = f.read()
    with open(path, 'w') as f:
        f.write('\n'.join(header) + '\n' + text)
    return path
