"""What ``tools/train.py``, ``tools/test.py`` and ``tools/search.py`` share when they turn a
command line into a config and a runner (MMPretrain's and MMSeg's tools, merged)."""
import argparse
import importlib
import importlib.util
import os.path as osp
from types import ModuleType
from typing import Sequence

from mmengine.config import Config
from mmengine.runner import Runner

SCOPES = ('mmpretrain', 'mmseg')


def apply_common_args(cfg: Config, args: argparse.Namespace) -> str:
    """``--cfg-options``, ``--launcher`` and ``--work-dir`` (CLI > config > ``work_dirs/NAME``);
    returns the config's ``default_scope``, which must be one of :data:`SCOPES`."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(f'default_scope must be one of {SCOPES}, got {scope!r}')
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return scope


def ensure_hooks(cfg: Config, hooks: Sequence[dict]) -> None:
    """Add each hook to ``cfg.custom_hooks`` unless one of its type is listed; the keys given
    besides ``type`` are also set on a listed one."""
    custom = list(cfg.get('custom_hooks') or [])
    for hook in hooks:
        listed = [h for h in custom if h.get('type') == hook['type']]
        for h in listed:
            h.update({k: v for k, v in hook.items() if k != 'type'})
        if not listed:
            custom.append(dict(hook))
    cfg.custom_hooks = custom


def build_runner(cfg: Config) -> Runner:
    """MMEngine's ``Runner``, or the scope's registered ``runner_type``."""
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return importlib.import_module(f'{cfg.default_scope}.registry').RUNNERS.build(cfg)


def load_script(path: str) -> ModuleType:
    """A script of ``tools/`` as a module (``tools/`` is not a package), e.g. for one tool to use
    another's functions."""
    name = 'mmdavpt_tools_' + osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
