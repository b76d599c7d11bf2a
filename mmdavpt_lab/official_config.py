"""Translate a config of the official DA-VPT code into an mmdavpt (MMEngine) config.

The official code (github.com/Noahsark/DA-VPT, commit 1a5ac60) reads ``configs/{fgvc,vtab}/*.yaml``
with its own line reader (``params.py``, ``update_args_from_file_colon``): every ``key:value``
line whose key is an argument of its argparse parser overwrites that argument, coerced to the
type of the argument's default. It skips, without a word, a key that is not an argument and a
value that does not parse as that type. Those files are not valid YAML (``batch_size:32`` has no
space after the colon), so they are read here with the same rules, not with a YAML parser.

:func:`translate_official_config` returns the mmdavpt config and a
:class:`TranslationReport` that says, key by key, what became which option, which keys the
official loader ignored, which official options have no effect in the official code, and what
the official model does that this config cannot reproduce. docs/official_recipe.md explains each
mapping with its source.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

from mmdavpt.datasets import FGVC_DATASETS, VTAB_TASKS

#: Every argument of the official ``params.py`` parser with its default (the default's Python
#: type is what the official loader coerces a config value to; ``early_stop_thr`` and
#: ``vpt_loss_stop_thr`` have the int default -1 although declared ``type=float``, so a float
#: value for them is ignored by the loader).
OFFICIAL_ARGS: Dict[str, object] = dict(
    # model_parameters
    model_name='vit-B', drop_path=0.0, fp16=False,
    local_model_path='./save/linear-vit-b-300ep.pth.tar',
    # prompt_parameters
    num_prompts=20, proxy_prompt_len=10, proxy_prompt_start_idx=11, proxy_prompt_end_idx=11,
    prompt_drop_rate=0.0,
    # dataset_parameters
    dataset='cub', data_dir='./vpt_data', class_sampler=False, samples_per_class=2,
    data_cropsize=224, epochs=2, batch_size=32, workers=8,
    # training_parameters
    weight_decay=1e-2, wd_head=3.0, lr=1e-3, min_lr=1e-8, warmup_epochs=10, device='cuda',
    eval_after=60, warmup_lr=1e-7, sched='cosine', sched_on_updates=False, early_stop_thr=-1,
    vpt_loss_stop_thr=-1, open_bias_decay=False, open_weight_decay=False, optimizer='adamw',
    momentum=0.9, nesterov=False, save_checkpoint=False, save_dir='../save/checkpoint',
    task_name='test', load_model=None, load_config='', test_vpt_loss_off=False,
    test_cls_loss_off=False,
    # tuning_parameters
    gpu=0, seed=0, tuning_type='prompt', quiet_mode=False,
    # criterion_parameters
    proxy_vpt=False, criterion='proxyanchor', loss_oproxy_pos_alpha=32.0,
    loss_oproxy_neg_alpha=32.0, loss_oproxy_pos_delta=0.1, loss_oproxy_neg_delta=-0.1,
    head_pooling='max', local_layer_gradient=False, initial_mapping='kmeans',
    init_sample_per_class=10, select_type='cls_attn', pooling_type='mean', kmeans_norm='layer',
    vpt_norm='none', init_divide_by8=False, vpt_loss_weight=0.0, cls_loss_weight=0.0,
    learn_bias=False, train_cls=False, bias_fc1=False, bias_fc2=False, bias_proj=False,
    bias_norm1=False, bias_norm2=False, bias_norm=False, norm_norm1=False, norm_norm2=False,
    norm_norm=False, bias_q=False, bias_k=False, bias_v=False, vpt_head_init=False,
    vpt_init=False, init_pooling_type='mean', init_select_topk=5, noise_ratio=0.2,
    dynamic_kmeans=0, vpt_cls_loss_weight=0.1, vpt_cls_loss=False, connection_type='none',
    fixed_gate_ratio=0.2, connect_last_layer=False, attention_scaling_topk=False,
    loss_vpt_scale_ratio=1.0, mae_pooling='all', patch_type='output', vpt_type_for_cls_ml='vpt',
    vpt_type_for_patch_ml='vpt', cls_type='query', mask=False,
    config='configs/fgvc/vitb_cub200.yaml')

#: Arguments the official code reads but that change nothing in what it trains (read only in
#: commented-out or unreachable code, or, for ``patch_type``, read and then overwritten:
#: ``ml_patch_forward`` always uses ``patchs[0]``, the block input).
NO_EFFECT = ('patch_type', 'head_pooling', 'select_type', 'pooling_type', 'local_layer_gradient',
             'attention_scaling_topk', 'vpt_head_init', 'vpt_init', 'init_pooling_type',
             'init_select_topk', 'noise_ratio', 'vpt_cls_loss_weight', 'connection_type',
             'fixed_gate_ratio', 'connect_last_layer', 'load_model', 'load_config')

#: Arguments about where and how the official script runs, not about what it trains.
RUNTIME = ('gpu', 'device', 'quiet_mode', 'save_checkpoint', 'save_dir', 'task_name',
           'local_model_path', 'data_dir', 'config', 'eval_after', 'early_stop_thr',
           'vpt_loss_stop_thr')

#: official ``model_name`` -> our pre-training name in ``configs/classification/_base_``.
PRETRAININGS = {'vit-B': 'in21k', 'mae-B': 'mae', 'moco-B': 'mocov3'}
#: official FGVC ``dataset`` -> our FGVC name (``configs/_base_/datasets/fgvc/{name}.py``).
FGVC_NAMES = {'cub': 'cub', 'nabirds': 'nabirds', 'flowers': 'oxford_flowers',
              'dogs': 'stanford_dogs', 'cars': 'stanford_cars'}
#: official VTAB ``dataset`` -> our task (``configs/_base_/datasets/vtab1k/{task}.py``).
VTAB_NAMES = {**{t: t for t in VTAB_TASKS}, 'cifar100': 'cifar',
              'retinopathy': 'diabetic_retinopathy'}
VIT_B_DEPTH = 12

_TRUE = {'1', 'true', 't', 'yes', 'y', 'on'}
_FALSE = {'0', 'false', 'f', 'no', 'n', 'off'}
_IGNORED = object()


@dataclass
class TranslationReport:
    """What :func:`translate_official_config` did with each official setting.

    Attributes:
        translated: ``official key = value -> our option`` lines.
        ignored: keys (or values) the official loader skipped without a word; the official run
            used the default instead.
        no_effect: official options that change nothing in the official code.
        not_reproduced: what the official run does that the translated config does not.
        runtime: official settings about the machine or the bookkeeping, left out.
    """
    translated: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    no_effect: List[str] = field(default_factory=list)
    not_reproduced: List[str] = field(default_factory=list)
    runtime: List[str] = field(default_factory=list)

    SECTIONS = (
        ('translated', 'Translated (official -> mmdavpt)'),
        ('ignored', 'IGNORED by the official loader (the official run used the default)'),
        ('no_effect', 'Read by the official code but without effect there'),
        ('not_reproduced', 'NOT reproduced by this config (check before comparing numbers)'),
        ('runtime', 'Left out (machine and bookkeeping of the official script)'),
    )

    def format(self, prefix: str = '') -> str:
        """The report as text, one section per kind, each line starting with ``prefix``."""
        lines = []
        for name, title in self.SECTIONS:
            items = getattr(self, name)
            lines.append(f'{prefix}{title}: {len(items)}')
            lines += [f'{prefix}  - {item}' for item in items]
        return '\n'.join(lines)


def read_official_config(text: str) -> List[Tuple[int, str, str]]:
    """The ``(line number, key, raw value)`` entries the official loader looks at, in order.

    Same rules as ``update_args_from_file_colon``: blank lines, ``#`` lines and lines without
    ``:`` are skipped; the key is what precedes the first ``:``, stripped of spaces and leading
    dashes, with ``-`` read as ``_``.
    """
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith('#') or ':' not in line:
            continue
        key, value = line.split(':', 1)
        entries.append((lineno, key.strip().lstrip('-').replace('-', '_'), value))
    return entries


def _coerce(raw: str, default: object) -> object:
    """``raw`` as the official loader's ``_coerce`` reads it for an argument with ``default``;
    ``_IGNORED`` where it silently keeps the current value."""
    value = raw.strip().strip('"').strip("'")
    if isinstance(default, bool):
        low = value.lower()
        return True if low in _TRUE else False if low in _FALSE else _IGNORED
    try:
        if isinstance(default, int):
            return int(value, 0)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        return _IGNORED
    return value


def official_args(config: Union[str, Mapping[str, object]]
                  ) -> Tuple[Dict[str, object], List[str]]:
    """The official run's arguments for ``config``, and the entries its loader ignored.

    Args:
        config: the text of an official yaml, or a mapping (e.g. from ``yaml.safe_load`` of a
            well-formed file), whose values are read as their ``str()``, the way the official
            loader reads the text.

    Returns:
        All official arguments (defaults where the config does not set one) and one message
        per ignored entry.
    """
    if isinstance(config, str):
        entries = read_official_config(config)
    else:
        entries = [(None, str(k), str(v)) for k, v in config.items()]
    args = dict(OFFICIAL_ARGS)
    ignored = []
    for lineno, key, raw in entries:
        where = f'line {lineno}: ' if lineno is not None else ''
        if key not in OFFICIAL_ARGS:
            ignored.append(f'{where}{key}:{raw.strip()} (not an argument of the official '
                           'params.py)')
            continue
        value = _coerce(raw, args[key])
        if value is _IGNORED:
            ignored.append(f'{where}{key}:{raw.strip()} (does not parse as '
                           f'{type(args[key]).__name__}; the official run kept '
                           f'{args[key]!r})')
            continue
        args[key] = value
    return args, ignored


def _dataset(name: str, num_classes: Optional[int]) -> Tuple[Optional[str], int]:
    """Official dataset name -> (our dataset base config, relative to the repo; classes)."""
    if name in FGVC_NAMES:
        ours = FGVC_NAMES[name]
        return f'configs/_base_/datasets/fgvc/{ours}.py', FGVC_DATASETS[ours][1]
    if name in VTAB_NAMES:
        ours = VTAB_NAMES[name]
        return f'configs/_base_/datasets/vtab1k/{ours}.py', VTAB_TASKS[ours][1]
    if num_classes is None:
        raise ValueError(f'official dataset {name!r} is not one of ours '
                         f'({sorted(FGVC_NAMES) + sorted(VTAB_NAMES)}); pass num_classes '
                         '(--num-classes) and set the dataloaders in the written config')
    return None, num_classes


def _loss_settings(args: Dict[str, object], report: TranslationReport) -> Optional[dict]:
    """temperature / margin of both losses from alpha, delta and the prompt scale."""
    if args['criterion'] != 'proxyanchor':
        raise ValueError(f"criterion={args['criterion']!r}: only the official 'proxyanchor' "
                         'loss has a counterpart in mmdavpt')
    alpha, neg_alpha = args['loss_oproxy_pos_alpha'], args['loss_oproxy_neg_alpha']
    delta, neg_delta = args['loss_oproxy_pos_delta'], args['loss_oproxy_neg_delta']
    if alpha != neg_alpha or neg_delta != -delta or alpha <= 0:
        raise ValueError(f'loss_oproxy_pos_alpha={alpha}, loss_oproxy_neg_alpha={neg_alpha}, '
                         f'loss_oproxy_pos_delta={delta}, loss_oproxy_neg_delta={neg_delta}: '
                         'mmdavpt has one temperature and one margin, which needs equal alphas '
                         '> 0 and neg_delta = -pos_delta')
    scale = args['loss_vpt_scale_ratio']
    if scale < 0:
        raise ValueError(f'loss_vpt_scale_ratio={scale} < 0 has no mmdavpt counterpart')
    if scale == 0:
        report.not_reproduced.append(
            'loss_vpt_scale_ratio = 0: the official similarities are all 0, so both metric '
            'losses are constants with no gradient; translated as losses OFF')
        return None
    # official logits: -alpha * (scale * cos - delta) and alpha * (scale * cos + delta)
    #                = -(cos - delta / scale) / tau and (cos + delta / scale) / tau,
    # tau = 1 / (alpha * scale)
    temperature, margin = 1 / (alpha * scale), delta / scale
    report.translated.append(
        f'loss_oproxy_*_alpha = {alpha}, loss_oproxy_*_delta = +-{delta}, loss_vpt_scale_ratio '
        f'= {scale} -> temperature = 1 / (alpha * scale) = 1/{alpha * scale:g}, margin = delta '
        f'/ scale = {margin:g} (both losses)')
    return dict(temperature=temperature, margin=margin, positive_norm='all')


_PROMPT_SIDES = {'vpt': 'raw', 'query': 'query'}


def _prompt_side(args: Dict[str, object], key: str) -> str:
    if args[key] not in _PROMPT_SIDES:
        hint = ("; mmdavpt has no key prompt side (ClsPromptLoss(prompt_side='key') was tried "
                'and removed: see docs/reports/evidence.md)' if key == 'vpt_type_for_cls_ml'
                and args[key] == 'key' else '')
        raise ValueError(f'{key}={args[key]!r}: not translated (only {sorted(_PROMPT_SIDES)})'
                         f'{hint}')
    return _PROMPT_SIDES[args[key]]


def _guidance(args: Dict[str, object], report: TranslationReport) -> dict:
    settings = _loss_settings(args, report)
    if args['cls_type'] != 'query':
        raise ValueError(f"cls_type={args['cls_type']!r}: mmdavpt's ClsPromptLoss uses the CLS "
                         "query (cls_type='query') only")
    guidance = dict(loss_xp=None, loss_pcls=None, mapping=dict(seed=args['seed']))
    specs = (('loss_xp', 'PatchPromptLoss', 'vpt_loss_weight', 'test_vpt_loss_off',
              'vpt_type_for_patch_ml', dict(sample_side='block_input_mean')),
             ('loss_pcls', 'ClsPromptLoss', 'cls_loss_weight', 'test_cls_loss_off',
              'vpt_type_for_cls_ml', {}))
    for name, loss_type, weight_key, off_key, side_key, extra in specs:
        weight = args[weight_key]
        if not args['proxy_vpt'] or args[off_key] or weight == 0 or settings is None:
            why = ('proxy_vpt is false' if not args['proxy_vpt'] else f'{off_key} is true'
                   if args[off_key] else f'{weight_key} = 0' if weight == 0
                   else 'loss_vpt_scale_ratio = 0')
            report.translated.append(f'{weight_key} = {weight}: {why} -> {name}=None '
                                     f'(the {loss_type} is OFF)')
            continue
        guidance[name] = dict(type=loss_type, loss_weight=weight,
                              prompt_side=_prompt_side(args, side_key), **extra, **settings)
        report.translated.append(f'{weight_key} = {weight} -> {name}.loss_weight; '
                                 f'{side_key} = {args[side_key]!r} -> prompt_side = '
                                 f"{guidance[name]['prompt_side']!r}")
    if guidance['loss_xp'] is not None:
        report.translated.append("samples: the mean of the guided block's input patch tokens "
                                 "-> sample_side='block_input_mean'")
    if settings is not None:
        report.translated.append("positive term averaged over all M prompts -> "
                                 "positive_norm='all'")
    return guidance


def _guided_layers(args: Dict[str, object]) -> Tuple[int, ...]:
    """``PromptVisionTransformer._setup_prompt_indices`` of the official ``models/vpt.py``."""
    start, end = args['proxy_prompt_start_idx'], args['proxy_prompt_end_idx']
    if not 0 <= start < VIT_B_DEPTH or end < start:
        raise ValueError(f'proxy_prompt_start_idx={start}, proxy_prompt_end_idx={end}: need '
                         f'0 <= start <= end (ViT-B has {VIT_B_DEPTH} blocks)')
    depth = min(end - start + 1, VIT_B_DEPTH - start)
    return tuple(range(start, start + depth))


def _bias_tuning(args: Dict[str, object], report: TranslationReport) -> Tuple[str, ...]:
    groups = [g for g in ('q', 'k', 'v', 'proj', 'fc1', 'fc2') if args[f'bias_{g}']]
    norm_flags = [f for f in ('bias_norm1', 'bias_norm2', 'norm_norm1', 'norm_norm2',
                              'bias_norm', 'norm_norm') if args[f]]
    if args['learn_bias']:
        groups = ['q', 'k', 'v', 'proj', 'fc1', 'fc2']
        norm_flags.append('learn_bias')
        report.not_reproduced.append('learn_bias = true also tunes the patch embedding bias '
                                     'and the fused qkv bias; mmdavpt tunes the bias groups only')
    if norm_flags:
        groups.append('norm')
        report.translated.append(f"{', '.join(norm_flags)} -> bias group 'norm'")
        report.not_reproduced.append(
            f"{', '.join(norm_flags)}: mmdavpt's 'norm' group tunes the biases of both "
            "LayerNorms of every block and of the final LayerNorm, never their weights (the "
            'official norm_norm* flags also tune the LayerNorm weights; bias_norm1/2 tune one '
            'LayerNorm each)')
    if groups:
        report.translated.append(
            'bias flags ' + ', '.join(f'bias_{g}' for g in groups if g != 'norm')
            + f' -> bias_tuning = {tuple(groups)}')
    if 'k' in groups:
        report.translated.append('bias_k: the key bias is inert (exactly zero gradient); kept '
                                 'for parity with the parameter count')
    return tuple(groups)


def _optim_wrapper(args: Dict[str, object], report: TranslationReport) -> dict:
    optimizers = {'adamw': dict(type='AdamW'), 'adam': dict(type='Adam'),
                  'sgd': dict(type='SGD', momentum=args['momentum'],
                              nesterov=args['nesterov'])}
    if args['optimizer'] not in optimizers:
        raise ValueError(f"optimizer={args['optimizer']!r}: the official code knows only "
                         f'{sorted(optimizers)}')
    wd, wd_head = args['weight_decay'], args['wd_head']
    # utils.param_groups_weight_decay: no decay for biases and every parameter with ndim <= 1,
    # wd_head for the other parameters with 'head' in their name, weight_decay for the rest.
    if wd > 0:
        base, custom = wd, {'head.fc.weight': dict(decay_mult=wd_head / wd)}
    elif wd_head > 0:
        base, custom = wd_head, {'backbone': dict(decay_mult=0.)}
    else:
        base, custom = 0., {}
    if args['open_bias_decay'] or args['open_weight_decay']:
        report.not_reproduced.append('open_bias_decay / open_weight_decay: decay on biases and '
                                     '1-D parameters is not translated (none is applied)')
    report.translated.append(
        f"optimizer = {args['optimizer']!r}, lr = {args['lr']}, weight_decay = {wd}, wd_head = "
        f'{wd_head} -> optimizer {optimizers[args["optimizer"]]["type"]}, weight_decay = {base} '
        f'with paramwise_cfg custom_keys {custom}, no decay on biases and 1-D parameters '
        '(bias/norm/flat_decay_mult = 0)')
    report.translated.append("gradient values clipped at 10 (train.py) -> clip_grad = "
                             "dict(type='value', clip_value=10.0)")
    return dict(
        optimizer=dict(**optimizers[args['optimizer']], lr=args['lr'], weight_decay=base),
        clip_grad=dict(type='value', clip_value=10.),
        paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0., flat_decay_mult=0.,
                           custom_keys=custom))


def _schedule(args: Dict[str, object], report: TranslationReport) -> Tuple[list, dict]:
    if args['sched'] != 'cosine':
        raise ValueError(f"sched={args['sched']!r}: only the official 'cosine' is translated")
    epochs, warmup, lr = args['epochs'], args['warmup_epochs'], args['lr']
    if not 0 <= warmup < epochs:
        raise ValueError(f'warmup_epochs={warmup} must be in [0, epochs={epochs})')
    per_iter = bool(args['sched_on_updates'])
    schedulers = []
    if warmup > 0:
        start = args['warmup_lr'] / lr
        if not 0 < start <= 1:
            raise ValueError(f"warmup_lr={args['warmup_lr']} must be in (0, lr={lr}]")
        schedulers.append(dict(type='LinearLR', start_factor=start, by_epoch=True, begin=0,
                               end=warmup, convert_to_iter_based=per_iter))
    schedulers.append(dict(type='CosineAnnealingLR', T_max=epochs - warmup,
                           eta_min=args['min_lr'], by_epoch=True, begin=warmup, end=epochs,
                           convert_to_iter_based=per_iter))
    report.translated.append(
        f"epochs = {epochs}, warmup_epochs = {warmup}, warmup_lr = {args['warmup_lr']}, "
        f"min_lr = {args['min_lr']}, sched_on_updates = {per_iter} -> LinearLR + "
        'CosineAnnealingLR, train_cfg.max_epochs')
    report.not_reproduced.append(
        "timm's cosine (create_scheduler) spans all epochs from 0 with the warm-up laid over "
        'its start; ours starts the cosine after the warm-up (10 warm-up epochs in 100: the '
        'official lr is 2.4 % of the peak lower at epoch 10 and at most 9.6 % lower, near '
        'epoch 39)')
    return schedulers, dict(by_epoch=True, max_epochs=epochs, val_interval=1)


def translate_official_config(config: Union[str, Mapping[str, object]],
                              num_classes: Optional[int] = None
                              ) -> Tuple[dict, TranslationReport]:
    """An official DA-VPT config as an mmdavpt config.

    Args:
        config: the official yaml's text (read with the official loader's rules), or a mapping.
        num_classes: C, needed only for a dataset that is not one of ours.

    Returns:
        ``(cfg, report)``: ``cfg`` is a config dict whose ``_base_`` entries are paths relative
        to the repository root (:func:`format_config` rewrites them for the file's folder); the
        report says what became of every official setting.
    """
    args, ignored = official_args(config)
    report = TranslationReport(ignored=ignored)
    if args['tuning_type'] != 'prompt':
        raise ValueError(f"tuning_type={args['tuning_type']!r}: only DA-VPT ('prompt') is "
                         "translated; use configs/classification/{linear,full} for the others")
    if args['model_name'] not in PRETRAININGS:
        raise ValueError(f"model_name={args['model_name']!r}: translated are "
                         f'{sorted(PRETRAININGS)} (ViT-B/16)')
    pretraining = PRETRAININGS[args['model_name']]
    dataset_base, classes = _dataset(args['dataset'], num_classes)
    bases = [f'configs/classification/_base_/vit-b16-{pretraining}_davpt-plus.py']
    bases += [dataset_base] if dataset_base else []
    report.translated.append(f"model_name = {args['model_name']!r} -> "
                             f'configs/classification/_base_/vit-b16-{pretraining}_*')
    report.translated.append(f"dataset = {args['dataset']!r} -> {dataset_base or 'none'}, "
                             f'{classes} classes')

    guided = _guided_layers(args)
    proxies = args['proxy_prompt_len']
    if proxies == 0:
        raise ValueError('proxy_prompt_len = 0: the official guided layers then hold no prompt '
                         'at all, which mmdavpt cannot express')
    num_guided = min(proxies, classes)
    report.translated.append(
        f"proxy_prompt_start_idx = {args['proxy_prompt_start_idx']}, proxy_prompt_end_idx = "
        f"{args['proxy_prompt_end_idx']} -> guided_layers = {guided}")
    report.translated.append(
        f'proxy_prompt_len = {proxies} -> num_guided_prompts = {num_guided}'
        + (f' (C = {classes} < {proxies}: one prompt per class, as train.py)'
           if num_guided < proxies else ''))
    report.translated.append(f"num_prompts = {args['num_prompts']} -> num_prompts; "
                             f"prompt_drop_rate = {args['prompt_drop_rate']} -> prompt_dropout; "
                             f"train_cls = {args['train_cls']} -> train_cls_token")
    backbone = dict(num_prompts=args['num_prompts'], guided_layers=guided,
                    num_guided_prompts=num_guided, prompt_dropout=args['prompt_drop_rate'],
                    bias_tuning=_bias_tuning(args, report), train_cls_token=args['train_cls'])
    guidance = _guidance(args, report)

    batch = args['batch_size']
    if args['class_sampler']:
        sampler = dict(_delete_=True, type='ClassBalancedSampler', batch_size=batch,
                       samples_per_class=args['samples_per_class'])
        loader = dict(batch_size=batch, num_workers=args['workers'], sampler=sampler)
        report.translated.append(
            f"class_sampler = true, samples_per_class = {args['samples_per_class']}, batch_size "
            f'= {batch} -> ClassBalancedSampler ({batch // args["samples_per_class"]} class '
            f"slots x {args['samples_per_class']})")
    else:
        loader = dict(batch_size=batch, num_workers=args['workers'], drop_last=True,
                      sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True))
        report.translated.append(f'class_sampler = false, batch_size = {batch} -> '
                                 'DefaultSampler(shuffle=True), drop_last=True')
    report.translated.append(f"workers = {args['workers']} -> num_workers; seed = "
                             f"{args['seed']} -> randomness.seed")
    schedulers, train_cfg = _schedule(args, report)
    hook = dict(type='SemanticMappingHook', interval=1,
                images_per_class=args['init_sample_per_class'])
    if args['dynamic_kmeans'] == 0:
        hook['interval'] = args['epochs'] + 1  # never re-clustered after the initial mapping
    report.translated.append(
        f"init_sample_per_class = {args['init_sample_per_class']} -> "
        f"SemanticMappingHook.images_per_class; dynamic_kmeans = {args['dynamic_kmeans']} -> "
        f"interval = {hook['interval']}")
    _not_reproduced(args, pretraining, report)
    for key in NO_EFFECT:
        if args[key] != OFFICIAL_ARGS[key]:
            report.no_effect.append(f'{key} = {args[key]!r}')
    if args['patch_type'] == OFFICIAL_ARGS['patch_type']:
        report.no_effect.append(f"patch_type = {args['patch_type']!r} (the samples are always "
                                "the block input mean)")
    report.runtime += [f'{key} = {args[key]!r}' for key in RUNTIME if args[key] !=
                       OFFICIAL_ARGS[key]]

    cfg = dict(
        _base_=bases,
        model=dict(backbone=backbone, head=dict(num_classes=classes), guidance=guidance),
        train_dataloader=loader,
        optim_wrapper=_optim_wrapper(args, report),
        param_scheduler=schedulers,
        train_cfg=train_cfg,
        custom_hooks=[hook],
        randomness=dict(seed=args['seed'], deterministic=False))
    return cfg, report


def _not_reproduced(args: Dict[str, object], pretraining: str,
                    report: TranslationReport) -> None:
    """The official behaviours of these args that mmdavpt configs cannot express."""
    notes = report.not_reproduced
    if args['vpt_norm'] != 'none':
        notes.append(f"vpt_norm = {args['vpt_norm']!r}: the official model normalises every "
                     'prompt before inserting it (unit vectors for l2); mmdavpt inserts the '
                     'prompts as they are')
    if args['prompt_drop_rate'] > 0 and 'vpt' in (args['vpt_type_for_patch_ml'],
                                                   args['vpt_type_for_cls_ml']):
        notes.append(f"prompt_drop_rate = {args['prompt_drop_rate']}: the official raw prompt "
                     "side reads the prompts before dropout; mmdavpt's prompt_side='raw' reads "
                     'them as inserted, after dropout')
    if args['init_divide_by8']:
        notes.append('init_divide_by8 = true: official prompts start as xavier-uniform / 8 '
                     '(bound ~0.002 for ViT-B); mmdavpt uses the VPT bound (~0.06)')
    if args['mask']:
        notes.append('mask = true: official prompts attend neither to the CLS token nor to '
                     'each other; mmdavpt has no such mask')
    if args['drop_path'] > 0:
        notes.append(f"drop_path = {args['drop_path']}: active on the official frozen backbone "
                     '(whole model in train mode); mmdavpt keeps the frozen backbone in eval '
                     'mode')
    if args['fp16']:
        notes.append('fp16 = true: run tools/train.py with --amp for mixed precision')
    if args['data_cropsize'] != 224:
        notes.append(f"data_cropsize = {args['data_cropsize']}: our dataset bases use 224")
    if args['initial_mapping'] not in ('kmeans', 'all_classes'):
        notes.append(f"initial_mapping = {args['initial_mapping']!r}: mmdavpt maps by k-means")
    if args['dynamic_kmeans'] > 0:
        notes.append(f"dynamic_kmeans = {args['dynamic_kmeans']}: the official code collects "
                     'class means and re-clusters after each epoch from that (0-based) epoch on; '
                     'ours after every epoch')
    if args['vpt_cls_loss']:
        notes.append('vpt_cls_loss = true adds an official vpt_head that no loss trains; left '
                     'out')
    if pretraining == 'mae':
        notes.append(f"MAE: the official head reads the mean of the final normed "
                     f"{'prompt and patch' if args['mae_pooling'] == 'all' else 'patch'} "
                     '(mae_pooling) tokens; our MAE configs read the CLS token')
    notes.append(f"kmeans_norm = {args['kmeans_norm']!r}, 20 cosine k-means iterations: "
                 'mmdavpt clusters L2-normalised class means with scikit-learn k-means')
    notes.append('protocol: the official code evaluates the test split from epoch '
                 f"{args['eval_after']} on and reports the best test accuracy; mmdavpt keeps "
                 'the best-val checkpoint and tests it once')


def _inline(value: object) -> str:
    """``value`` as config source on one line, dicts as ``dict(k=v)`` where the keys allow."""
    if isinstance(value, dict):
        if all(isinstance(k, str) and k.isidentifier() for k in value):
            return 'dict(' + ', '.join(f'{k}={_inline(v)}' for k, v in value.items()) + ')'
        return '{' + ', '.join(f'{k!r}: {_inline(v)}' for k, v in value.items()) + '}'
    if isinstance(value, list):
        return '[' + ', '.join(_inline(v) for v in value) + ']'
    return repr(value)


def _render(value: object, indent: int) -> str:
    """``value`` as config source: on one line where it fits in 100 columns, else one item a
    line."""
    pad = ' ' * (indent + 4)
    if indent + len(_inline(value)) <= 80:
        return _inline(value)
    if isinstance(value, dict):
        if not value:
            return 'dict()'
        if all(isinstance(k, str) and k.isidentifier() for k in value):
            items = [f'{pad}{k}={_render(v, indent + 4)}' for k, v in value.items()]
            return 'dict(\n' + ',\n'.join(items) + ')'
        items = [f'{pad}{k!r}: {_render(v, indent + 4)}' for k, v in value.items()]
        return '{\n' + ',\n'.join(items) + '}'
    if isinstance(value, list):
        if not value:
            return '[]'
        return '[\n' + ',\n'.join(f'{pad}{_render(v, indent + 4)}' for v in value) + ']'
    return repr(value)


def format_config(cfg: dict, report: TranslationReport, config_dir: Union[str, Path],
                  repo_root: Union[str, Path], source: str = '') -> str:
    """The text of an MMEngine config file for ``cfg``, the report as its header comment.

    Args:
        cfg: from :func:`translate_official_config`.
        report: its report.
        config_dir: the folder the config file will be in; ``_base_`` paths are written
            relative to it (MMEngine resolves them from the config's folder).
        repo_root: the mmdavpt repository (where ``configs/`` is).
        source: where the official config came from, for the header.
    """
    cfg = dict(cfg)
    cfg['_base_'] = [os.path.relpath(Path(repo_root) / p, config_dir) for p in cfg['_base_']]
    header = [f'# Translated from the official DA-VPT config {source}'.rstrip(),
              '# by tools/convert_official_config.py (docs/official_recipe.md).',
              report.format(prefix='# ')]
    body = [f'{key} = {_render(value, 0)}' for key, value in cfg.items()]
    return '\n'.join(header) + '\n' + '\n'.join(body) + '\n'
