"""Hyperparameter search for DA-VPT configs with Optuna (``tools/search.py``).

Needs ``optuna`` (not a dependency of the rest of mmdavpt).
"""
from .pruning_hook import OptunaPruningHook
from .space import ALIASES, SearchParam, check_space, parse_param, parse_space
from .study import (
    Objective,
    build_pruner,
    default_metric,
    open_storage,
    run_search,
    trial_config,
    write_best_config,
)

__all__ = [
    'ALIASES', 'Objective', 'OptunaPruningHook', 'SearchParam', 'build_pruner',
    'check_space', 'default_metric', 'open_storage', 'parse_param', 'parse_space', 'run_search',
    'trial_config', 'write_best_config'
]
