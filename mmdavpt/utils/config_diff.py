"""Compare configs as MMEngine saves them in checkpoints, without running them: what
``ConfigGuardHook`` checks on resume and test, and :func:`check_work_dir_settings`, the guard of
``tools/train.py`` against overwriting the checkpoints of a run of other settings.

Importing :mod:`mmdavpt` first lets ``torch.load`` (``weights_only``) read mmengine checkpoints.
"""
import ast
import glob
import os.path as osp
from fnmatch import fnmatchcase
from typing import Dict, List, Sequence, Tuple

import torch

from mmdavpt.utils.workdir import WorkDirConflict

#: Config keys that say where and how a run is started, not what it trains: a training from
#: scratch into a work dir may differ from the run whose checkpoints are there only in these.
LOCATION_KEYS = ('work_dir', 'resume', 'load_from', 'launcher')


class _Absent:
    """A key that one of the two configs does not have."""

    def __repr__(self) -> str:
        return '<absent>'


ABSENT = _Absent()


def _node_value(node: ast.AST) -> object:
    """The value of a config expression: literals, containers and ``dict(k=v)``; anything else
    (a lambda, a name) is kept as its source text. Nothing is executed."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_node_value(e) for e in node.elts]
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_node_value(k): _node_value(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id == 'dict' and not node.args and all(k.arg for k in node.keywords):
        return {k.arg: _node_value(k.value) for k in node.keywords}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and \
            isinstance(node.operand, ast.Constant):
        return _node_value(node.operand) * (-1 if isinstance(node.op, ast.USub) else 1)
    return ast.unparse(node)


def parse_pretty_text(text: str) -> Dict[str, object]:
    """A config as MMEngine saves it in ``checkpoint['meta']['cfg']`` (``Config.pretty_text``),
    read without running it: unlike ``Config.fromstring``, a checkpoint cannot execute code."""
    out = {}
    for stmt in ast.parse(text).body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and \
                isinstance(stmt.targets[0], ast.Name):
            out[stmt.targets[0].id] = _node_value(stmt.value)
    return out


def _flatten(value: object, prefix: str, out: Dict[str, object]) -> Dict[str, object]:
    """``{'a': {'b': [1, 2]}}`` -> ``{'a.b.0': 1, 'a.b.1': 2}``."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f'{prefix}.{key}' if prefix else str(key), out)
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            _flatten(item, f'{prefix}.{i}', out)
    else:
        out[prefix] = value
    return out


def _section(cfg: Dict[str, object], key: str) -> object:
    node = cfg
    for part in key.split('.'):
        if not isinstance(node, dict) or part not in node:
            return ABSENT
        node = node[part]
    return node


def config_differences(saved: Dict[str, object], current: Dict[str, object],
                       keys: Sequence[str],
                       ignore_keys: Sequence[str] = ()) -> List[Tuple[str, object, object]]:
    """``(dotted key, saved value, current value)`` for each leaf of ``keys`` that differs.

    Both configs are :func:`parse_pretty_text` results (the current one goes through the same
    ``pretty_text``), so the representation of numbers, tuples and lists does not matter.
    ``ignore_keys`` are ``fnmatch`` patterns of dotted keys (e.g. ``'*.data_root'``). A key
    missing on one side is :data:`ABSENT`.
    """
    diffs = []
    for key in keys:
        old = _flatten(_section(saved, key), key, {})
        new = _flatten(_section(current, key), key, {})
        for leaf in sorted(set(old) | set(new)):
            if any(fnmatchcase(leaf, pattern) for pattern in ignore_keys):
                continue
            a, b = old.get(leaf, ABSENT), new.get(leaf, ABSENT)
            if a != b:
                diffs.append((leaf, a, b))
    return diffs


def check_work_dir_settings(work_dir: str, cfg) -> None:
    """Refuse to train ``cfg`` from scratch into a work dir whose checkpoints were saved by a run
    of other settings (the same config file with other ``--cfg-options``, say): MMEngine keeps one
    set of checkpoint names per work dir, so the new run would overwrite them (its best
    checkpoint, its dumped config) without a word.

    Compares the config each checkpoint saved (``meta['cfg']``, MMEngine's ``pretty_text``) with
    ``cfg`` on every key but :data:`LOCATION_KEYS`. Files without a saved config (converted
    weights) are not a run's and are ignored.

    Raises:
        WorkDirConflict: naming the checkpoint, the differing keys and the way out.
    """
    current = parse_pretty_text(cfg.pretty_text)
    for path in sorted(glob.glob(osp.join(work_dir, '*.pth'))):
        text = (torch.load(path, map_location='cpu', mmap=True).get('meta') or {}).get('cfg')
        if not text:
            continue
        saved = parse_pretty_text(text)
        keys = sorted((set(saved) | set(current)) - set(LOCATION_KEYS))
        diffs = config_differences(saved, current, keys)
        if not diffs:
            continue
        shown = '; '.join(f'{k}: {short(a)} -> {short(b)}' for k, a, b in diffs[:6])
        more = f' (and {len(diffs) - 6} more)' if len(diffs) > 6 else ''
        raise WorkDirConflict(
            f'{work_dir} holds checkpoints of a run with other settings (e.g. '
            f'{osp.basename(path)}; {len(diffs)} config key(s) differ, checkpoint -> now: '
            f'{shown}{more}); training there from scratch would overwrite them. Pass another '
            f'--work-dir, or --resume to continue that run.')


def short(value: object, width: int = 60) -> str:
    """``repr(value)``, cut to ``width`` characters."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + '...'
