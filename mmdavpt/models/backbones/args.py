"""Argument checks of :class:`DAVPTViT` that turn a config value into what the model uses.

A frozen backbone without pre-trained weights is refused unless the config asks for it
(:func:`pretrained_checkpoint`).

A config may write a single value where a sequence is expected (``guided_layers=11``, like
MMPretrain's ``out_indices``; ``bias_tuning='norm'``). A string is never split into letters:
``bias_tuning='kv'`` would otherwise silently mean ``('k', 'v')``, and ``'norm'`` would fail on
``'n'``.
"""
import logging
from typing import List, Optional, Sequence, Tuple, Union

from mmengine.logging import print_log


def int_list(value: Union[int, Sequence[int]], name: str) -> List[int]:
    """``value`` as a list of ints: an int is one index, a list or tuple of ints is kept.

    Raises:
        TypeError: naming ``name`` when ``value`` (or an item of it) is a string, a bool, a float
            or anything else that is not an int.
    """
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or any(
            isinstance(i, bool) or not isinstance(i, int) for i in items):
        raise TypeError(f'{name} must be an int or a list/tuple of ints (layer indices, negative '
                        f'from the end), got {value!r}')
    return list(items)


def name_tuple(value: Union[str, Sequence[str]], name: str,
               choices: Sequence[str]) -> Tuple[str, ...]:
    """``value`` as a tuple of names from ``choices``: a string is one name.

    A string that is not a name but whose letters are (``'kv'``) is refused with the tuple it
    probably means (``('k', 'v')``).

    Raises:
        TypeError: ``value`` is neither a string nor a sequence of strings.
        ValueError: unknown names, listing ``choices``.
    """
    if isinstance(value, str):
        if value in choices:
            return (value, )
        hint = ''
        if value and all(c in choices for c in value):
            hint = f'; a string is one name: for several, write {tuple(value)!r}'
        raise ValueError(f'unknown {name} name {value!r}; choose from {tuple(choices)}{hint}')
    if not isinstance(value, Sequence) or any(not isinstance(v, str) for v in value):
        raise TypeError(f'{name} must be a name or a list/tuple of names from {tuple(choices)}, '
                        f'got {value!r}')
    unknown = set(value) - set(choices)
    if unknown:
        raise ValueError(f'unknown {name} names {sorted(unknown)}; choose from {tuple(choices)}')
    return tuple(value)


def pretrained_checkpoint(init_cfg: object, allow_random_backbone: bool) -> Optional[object]:
    """The checkpoint of ``init_cfg=dict(type='Pretrained', checkpoint=...)``, else ``None``.

    ``None`` (a randomly initialised frozen backbone) only with ``allow_random_backbone``, and
    then with a warning in the log.

    Raises:
        ValueError: no pre-trained checkpoint and no ``allow_random_backbone``, saying how to
            fix the config.
    """
    if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
        return init_cfg['checkpoint']
    if not allow_random_backbone:
        raise ValueError(
            f'DAVPTViT has no pre-trained weights (init_cfg={init_cfg!r}): training would tune '
            'prompts on a frozen, randomly initialised ViT. Set model.backbone.init_cfg='
            "dict(type='Pretrained', checkpoint='path/to/vit.pth') (composing an upstream config "
            'with _delete_=True on the backbone drops its init_cfg: copy it into the new '
            'backbone), or set model.backbone.allow_random_backbone=True if a random frozen '
            'backbone is meant (tests; frozen weights that come from a full load_from/resume '
            'checkpoint)')
    print_log(f'DAVPTViT: init_cfg={init_cfg!r} and allow_random_backbone=True: the frozen '
              'backbone is randomly initialised', logger='current', level=logging.WARNING)
    return None
