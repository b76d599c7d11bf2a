"""Report every validation of a trial to Optuna, and stop the trial when its pruner says so."""
from typing import Dict, Optional

import optuna
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop


class OptunaPruningHook(Hook):
    """Hand each validation metric of a training run to an Optuna trial.

    After every validation the value of ``metric`` is reported to ``trial`` at step = epochs
    trained (epoch-based loops) or iterations trained (iteration-based loops); when the study's
    pruner decides the trial is worse than the others at that step, ``optuna.TrialPruned`` is
    raised, which ends ``runner.train()``.

    Args:
        trial: the running Optuna trial.
        metric: key of the validation metric, e.g. ``'accuracy/top1'`` or ``'mIoU'``.
        greater_is_better: whether larger values are better (``direction='maximize'``).

    Attributes:
        best: the best value seen so far (``None`` before the first validation); the trial's
            value, as the checkpoint selection on the val split keeps the best epoch.
    """

    priority = 'LOWEST'  # after the logger and the checkpoint hook have seen the metrics

    def __init__(self, trial: optuna.Trial, metric: str, greater_is_better: bool = True) -> None:
        self.trial = trial
        self.metric = metric
        self.greater_is_better = greater_is_better
        self.best: Optional[float] = None

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if not metrics or self.metric not in metrics:
            raise KeyError(f'the validation metrics {sorted(metrics or {})} have no '
                           f'{self.metric!r}: pass --metric with one of them')
        value = float(metrics[self.metric])
        if self.best is None or (value > self.best) == self.greater_is_better:
            self.best = value
        by_epoch = isinstance(runner.train_loop, EpochBasedTrainLoop)
        step = runner.epoch if by_epoch else runner.iter
        self.trial.report(value, step)
        if self.trial.should_prune():
            unit = 'epoch' if by_epoch else 'iteration'
            runner.logger.info(f'Optuna: trial {self.trial.number} pruned after {unit} {step} '
                               f'({self.metric}={value:.4f})')
            raise optuna.TrialPruned(f'{self.metric}={value:.4f} at {unit} {step}')
