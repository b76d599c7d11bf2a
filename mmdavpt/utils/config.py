"""Reading configs that inherit mmdavpt's own configs by package path, as OpenMMLab configs do::

    _base_ = ['mmdavpt::demo/vit-s14-imgfocus_davpt_animal-mnist-56px.py']
    model = dict(backbone=dict(init_cfg=dict(checkpoint='my_vit-s14.pth')))

MMEngine resolves ``package::path`` from ``{installed package}/.mim/configs/path`` for the
packages in its ``MODULE2PACKAGE`` table; an installed mmdavpt (``pip install``, not an editable
install) ships its configs there (``setup.py``). Two things are needed besides, and
:func:`load_config` (which ``tools/train.py``, ``tools/test.py`` and ``demo/image_demo.py`` read
configs with) does both:

- mmdavpt is entered in ``MODULE2PACKAGE`` (:func:`register_config_package`; the one change to
  MMEngine's tables, asked for by the tools, not made by importing ``mmdavpt``);
- MMEngine scopes every ``type`` dict of such a base to the package (``_scope_='mmdavpt'``), but
  mmdavpt's modules live in MMPretrain's and MMSeg's registries: those dicts are built in the
  config's ``default_scope``, as the inherited config builds them itself (:func:`rescope`).
"""
from typing import Any

from mmengine.config import Config
from mmengine.config.utils import MODULE2PACKAGE

#: The package name of ``mmdavpt::`` paths, and the scope MMEngine gives what they define.
PACKAGE = 'mmdavpt'


def register_config_package() -> None:
    """Let MMEngine resolve ``mmdavpt::path`` from the installed package's ``.mim/configs``.
    Idempotent."""
    MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)


def rescope(cfg: Any, scope: str) -> int:
    """Replace ``_scope_='mmdavpt'`` by ``scope`` in every dict of ``cfg`` (in place); returns
    how many were replaced."""
    replaced = 0
    if isinstance(cfg, dict):
        if cfg.get('_scope_') == PACKAGE:
            cfg['_scope_'] = scope
            replaced += 1
        for value in cfg.values():
            replaced += rescope(value, scope)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            replaced += rescope(value, scope)
    return replaced


def load_config(filename: str, **kwargs) -> Config:
    """``Config.fromfile(filename, **kwargs)``, with ``mmdavpt::`` bases resolved and built in
    the config's ``default_scope`` (see the module's docstring).

    Raises:
        ValueError: an ``mmdavpt::`` base whose config has no ``default_scope``.
    """
    register_config_package()
    cfg = Config.fromfile(filename, **kwargs)
    scope = cfg.get('default_scope')
    if rescope(cfg._cfg_dict, scope) and scope is None:
        raise ValueError(f'{filename}: inherits an mmdavpt:: config but has no default_scope '
                         "('mmpretrain' or 'mmseg') to build its modules in")
    return cfg
