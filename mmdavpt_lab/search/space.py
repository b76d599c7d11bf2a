"""The search space of ``tools/search.py``: parse ``name=kind:args`` specs, sample, apply.

A spec names a hyperparameter (one of :data:`ALIASES`, or any dotted config key) and how to
sample it::

    beta=loguniform:0.01:1 lam=loguniform:0.01:1 lr=loguniform:1e-4:1e-2
    weight_decay=loguniform:1e-5:1e-2 num_guided_prompts=int:2:10
    model.backbone.num_prompts=choice:5,10,20 model.backbone.prompt_dropout=uniform:0:0.2

Kinds: ``uniform:LOW:HIGH``, ``loguniform:LOW:HIGH`` (floats), ``int:LOW:HIGH`` (inclusive),
``intlog:LOW:HIGH`` (log-spaced integers), ``choice:A,B,...`` (Python literals, else strings).
"""
import ast
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple, Union

import optuna
from mmengine.config import Config

#: Short names of the hyperparameters the paper tunes -> the config keys they set.
ALIASES: Dict[str, str] = {
    'beta': 'model.guidance.loss_xp.loss_weight',  # weight of L_ML(x, p)
    'lam': 'model.guidance.loss_pcls.loss_weight',  # weight of L_ML(p, x_cls)
    'lr': 'optim_wrapper.optimizer.lr',
    'weight_decay': 'optim_wrapper.optimizer.weight_decay',
    'wd': 'optim_wrapper.optimizer.weight_decay',
    'num_guided_prompts': 'model.backbone.num_guided_prompts',
    'num_prompts': 'model.backbone.num_prompts',
}
KINDS = ('uniform', 'loguniform', 'int', 'intlog', 'choice')
_KEY = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$')


@dataclass(frozen=True)
class SearchParam:
    """One searched hyperparameter.

    Attributes:
        name: the name the user gave (an alias or the key); the Optuna parameter name.
        key: the dotted config key it sets, e.g. ``'optim_wrapper.optimizer.lr'``.
        kind: one of :data:`KINDS`.
        low, high: bounds of the numeric kinds (inclusive).
        choices: the values of ``'choice'``.
    """
    name: str
    key: str
    kind: str
    low: Union[int, float, None] = None
    high: Union[int, float, None] = None
    choices: Tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample this parameter for ``trial``."""
        if self.kind == 'choice':
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind in ('int', 'intlog'):
            return trial.suggest_int(self.name, self.low, self.high, log=self.kind == 'intlog')
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == 'loguniform')


def _parse_value(text: str) -> Any:
    """A Python literal written in a space spec (``3``, ``'adamw'``, ``(1, 2)``), else the text
    itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_param(spec: str) -> SearchParam:
    """Parse one ``name=kind:args`` spec (see the module docstring)."""
    name, sep, dist = spec.partition('=')
    name = name.strip()
    if not sep or not name or not dist:
        raise ValueError(f'search space entry {spec!r} is not name=kind:args, e.g. '
                         "'lr=loguniform:1e-4:1e-2'")
    key = ALIASES.get(name, name)
    if not _KEY.match(key):
        raise ValueError(f'{spec!r}: {name!r} is neither a known name {sorted(ALIASES)} nor a '
                         'dotted config key such as model.backbone.num_prompts')
    kind, _, args = dist.partition(':')
    if kind not in KINDS:
        raise ValueError(f'{spec!r}: unknown kind {kind!r}; choose from {KINDS}')
    if kind == 'choice':
        choices = tuple(_parse_value(v.strip()) for v in args.split(',') if v.strip())
        if not choices:
            raise ValueError(f'{spec!r}: choice needs values, e.g. choice:5,10,20')
        return SearchParam(name, key, kind, choices=choices)
    bounds = args.split(':')
    if len(bounds) != 2:
        raise ValueError(f'{spec!r}: {kind} needs two bounds, e.g. {kind}:1:10')
    cast = int if kind in ('int', 'intlog') else float
    try:
        low, high = (cast(b) for b in bounds)
    except ValueError:
        raise ValueError(f'{spec!r}: bounds {bounds} are not {cast.__name__}s') from None
    if low > high:
        raise ValueError(f'{spec!r}: low {low} > high {high}')
    if kind in ('loguniform', 'intlog') and low <= 0:
        raise ValueError(f'{spec!r}: {kind} needs positive bounds')
    return SearchParam(name, key, kind, low, high)


def parse_space(specs: Union[str, Sequence[str]]) -> List[SearchParam]:
    """Parse a space given as one string or several, entries separated by whitespace."""
    if isinstance(specs, str):
        specs = [specs]
    entries = [e for s in specs for e in s.split()]
    if not entries:
        raise ValueError('the search space is empty')
    params = [parse_param(e) for e in entries]
    keys = [p.key for p in params]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f'the search space sets {dup} more than once')
    return params


def _lookup(cfg: Config, key: str) -> Tuple[bool, Any]:
    node: Any = cfg.to_dict()
    for part in key.split('.'):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_space(cfg: Config, params: Sequence[SearchParam]) -> None:
    """Raise if a parameter sets a key the config does not have.

    A misspelt or absent key would otherwise be added silently and ignored by the model (e.g.
    ``beta`` on a config without DA-VPT guidance), and the search would tune nothing.
    """
    for p in params:
        found, value = _lookup(cfg, p.key)
        if not found or value is None:
            parent = p.key.rsplit('.', 1)[0]
            hint = (' (a config without DA-VPT guidance: model.guidance is None)'
                    if p.key.startswith('model.guidance.') else '')
            raise KeyError(f'search parameter {p.name!r} sets {p.key}, which the config does '
                           f'not have{hint}; the keys under {parent} are: '
                           f'{sorted(_lookup(cfg, parent)[1] or {})}')

