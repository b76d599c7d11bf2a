"""What DA-VPT costs: train-step time, peak memory, eval throughput and tunable parameters,
every time ratio with its confidence interval and every target with a three-way verdict.

    python tools/analysis/benchmark.py --arch b --img-size 224 --batch-size 8 \\
        --methods linear,vpt_deep,davpt,davpt_plus,full --rounds 10 --warmup 2 \\
        --num-prompts 10 --num-classes 100 --out work_dirs/benchmark.json [--device cuda] [--amp]

Every method is a classifier with a linear head on the final CLS token:

- ``linear``: the frozen :class:`DAVPTViT` without prompts; only the head trains.
- ``vpt_deep``: ``--num-prompts`` prompts in every layer (VPT-Deep).
- ``davpt``: as ``vpt_deep``, the last layer's prompts guided by ``L_ML(x, p)`` and
  ``L_ML(p, x_cls)`` (beta = lambda = 0.1) through :class:`DAVPTImageClassifier`.
- ``davpt_plus``: ``davpt`` that also tunes the key and value biases and the CLS token.
- ``full``: MMPretrain's ``VisionTransformer``, every parameter trained.

How it times (:mod:`mmdavpt_lab.timing`): all models live in this process and are called
round-robin, one call of each per round, the order rotating every round, so that load drift
(other jobs, clock changes) hits the models of a round alike; ``--rounds`` timed rounds follow
``--warmup`` untimed ones. Each call's wall time and this process's CPU time are kept (on CUDA:
the wall time between CUDA events around the call, and the host's CPU time). A ratio of two
models is the geometric mean of their per-round ratios with a Student-t interval over the
rounds (``--confidence``, 95 % by default), for the wall and for the CPU times.

What is measured (``results[method]`` in the JSON):

- ``train_step_s``: median wall time of one training step (forward, every loss, backward, AdamW
  step); ``train_step`` / ``train_step_cpu``: the median, mean and interquartile range of the
  wall / CPU times (a :class:`torch.utils.benchmark.Measurement`'s), ``train_step_all_s`` /
  ``train_step_cpu_all_s`` every round's.
- ``peak_mem_mb``: peak memory of training over the built model, in a fresh child process per
  method. CUDA: ``max_memory_allocated`` minus the memory allocated after the build. CPU: peak
  resident memory (VmHWM) minus the resident memory after the build; one untimed step first
  touches the code pages and one-time caches, then its optimizer state and gradients are dropped,
  free heap pages are returned to the system and the peak is reset, so the number holds
  activations, gradients, optimizer state and temporaries only.
- ``eval_img_per_s``: images per second of the classifier's forward in eval mode without
  gradients (median), round-robin like the training steps (``--eval-rounds``); ``eval``,
  ``eval_cpu``, ``eval_all_s``, ``eval_cpu_all_s`` as for the training step.
- ``tunable_params``: parameters with ``requires_grad``, head included.

``reference`` times the backbone forward (eval) of MMPretrain's ``VisionTransformer`` against
:class:`DAVPTViT` with ``--num-prompts`` prompts per layer and without prompts;
``eval_ratio_vs_upstream`` holds their ratios (``with_prompts``, ``no_prompts``,
``prompts_vs_no_prompts``, each also ``_cpu``) and ``ratios_vs_vpt_deep`` the methods' ratios to
VPT-Deep (``train_step``, ``train_step_cpu``, ``eval_time``, ``eval_time_cpu``), each a
``dict(ratio, low, high, n, log_std, confidence)``; ``peak_mem`` is a plain ratio. ``remap``
times one :meth:`SemanticMapping.remap` (first clustering, then warm-started). ``checks`` gives
each target of the performance issue (:data:`TARGETS`) its interval, its verdict (``met``:
the interval lies at or below the limit; ``over``: above it; ``cannot tell at this noise``)
and, when undecided, ``rounds_to_resolve``: roughly how many rounds of the same spread would
decide it. ``machine`` (CPU model, cores, torch and its threads), ``load_before`` and
``load_after`` (the load average) and ``seconds`` record the state the figures were taken in.

A training step is ``model.train_step`` as ``tools/train.py`` runs it, less the data
preprocessor: the loss under the optimizer wrapper's ``optim_context``, ``parse_losses``, then
``update_params`` (backward, AdamW step, zero_grad). ``--amp`` picks the wrapper as
``tools/train.py --amp`` does: mmengine's ``AmpOptimWrapper`` (fp16 autocast, dynamic loss
scaling) on CUDA, :class:`CPUAmpOptimWrapper` (bf16 autocast) on CPU; eval forwards then run
under the same autocast. Every step's total loss is recorded (``nonfinite_steps``), but
:class:`DAVPTImageClassifier` raises ``FloatingPointError`` on a non-finite loss (stopping the
benchmark), so only ``full`` (MMPretrain's ``ImageClassifier``) can count one.
"""
import argparse
import json
import os
import os.path as osp
import resource
import statistics
import time
from datetime import UTC, datetime
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.runner.amp import autocast
from mmpretrain.models import VisionTransformer
from mmpretrain.structures import DataSample
from torch import Tensor, nn

import mmdavpt  # noqa: F401  (registers the models)
from mmdavpt.models import SemanticMapping
from mmdavpt.registry import build_model
from mmdavpt.utils import CPUAmpOptimWrapper
from mmdavpt.utils.memory import measuring_pool, release_free_heap, reset_peak_rss, rss_kib
from mmdavpt.utils.params import count_tunable
from mmdavpt_lab.timing import (
    CANNOT_TELL,
    MET,
    OVER,
    check_target,
    clock_for,
    format_interval,
    geometric_mean_interval,
    machine_state,
    paired_ratio_interval,
    round_robin,
    spread,
)

METHODS = ('linear', 'vpt_deep', 'davpt', 'davpt_plus', 'full')
LABELS = dict(linear='Linear', vpt_deep='VPT-Deep', davpt='DA-VPT', davpt_plus='DA-VPT+',
              full='Full')
#: MMPretrain's arch names (``tiny`` is for the smoke test only).
ARCHS = ('dinov2-s', 'b', 'l', 'tiny')
TINY_ARCH = dict(embed_dims=32, num_layers=3, num_heads=4, feedforward_channels=64,
                 patch_size=8)
#: What MMPretrain's DINOv2 configs set besides the arch: 14-pixel patches and LayerScale.
DINOV2_SETTINGS = dict(patch_size=14, layer_scale_init_value=1e-5)
#: The targets of the performance issue (upper bounds of ratios, and seconds for one remap).
TARGETS = {
    'train_step davpt / vpt_deep': 1.03,
    'train_step davpt_plus / vpt_deep': 1.05,
    'peak_mem davpt / vpt_deep': 1.03,
    'eval backbone with prompts / upstream': 1.08,
    'eval backbone no prompts / upstream': 1.02,
    'remap seconds (max over M, first and warm)': 0.5,
}
VIT_KEYS = ('embed_dims', 'num_layers', 'num_heads', 'feedforward_channels')


# ---------------------------------------------------------------------------------------------
# models
def arch_settings(arch: str) -> Tuple[dict, int, float]:
    """(MMPretrain arch dict, patch size, LayerScale init) of ``--arch``, the same for
    :class:`DAVPTViT` and MMPretrain's ``VisionTransformer``."""
    settings = TINY_ARCH if arch == 'tiny' else dict(
        VisionTransformer.arch_zoo[arch], **(DINOV2_SETTINGS if arch.startswith('dinov2') else {}))
    return ({k: settings[k] for k in VIT_KEYS}, settings.get('patch_size', 16),
            settings.get('layer_scale_init_value', 0.))


def upstream_backbone_cfg(args: argparse.Namespace, **kwargs) -> dict:
    arch, patch_size, layer_scale = arch_settings(args.arch)
    return dict(type='VisionTransformer', arch=arch, img_size=args.img_size,
                patch_size=patch_size, layer_scale_init_value=layer_scale,
                out_type='cls_token', **kwargs)


def davpt_backbone_cfg(args: argparse.Namespace, num_prompts: int, num_guided_prompts: int,
                       **kwargs) -> dict:
    arch, patch_size, layer_scale = arch_settings(args.arch)
    return dict(type='DAVPTViT', arch=arch, img_size=args.img_size, patch_size=patch_size,
                layer_scale_init_value=layer_scale, out_type='cls_token',
                num_prompts=num_prompts, num_guided_prompts=num_guided_prompts, **kwargs)


def classifier_cfg(method: str, args: argparse.Namespace) -> dict:
    """The model config of a method, as in ``configs/classification/_base_/methods``."""
    P = args.num_prompts
    guidance = None
    if method == 'full':
        backbone = upstream_backbone_cfg(args, drop_path_rate=0.1)
    elif method == 'linear':
        backbone = davpt_backbone_cfg(args, 0, 0)
    elif method == 'vpt_deep':
        backbone = davpt_backbone_cfg(args, P, 0, prompt_dropout=0.1)
    elif method in ('davpt', 'davpt_plus'):
        plus = dict(bias_tuning=('k', 'v'), train_cls_token=True) if method == 'davpt_plus' \
            else {}
        backbone = davpt_backbone_cfg(args, P, P, guided_layers=(-1, ), prompt_dropout=0.1,
                                      **plus)
        # timing only: the placeholder class->prompt mapping costs what a computed one does
        guidance = dict(loss_xp=dict(type='PatchPromptLoss', loss_weight=0.1),
                        loss_pcls=dict(type='ClsPromptLoss', loss_weight=0.1),
                        mapping=dict(fixed=True))
    else:
        raise ValueError(f'unknown method {method!r}; choose from {METHODS}')
    embed_dims = arch_settings(args.arch)[0]['embed_dims']
    cfg = dict(
        type='ImageClassifier' if method == 'full' else 'DAVPTImageClassifier',
        backbone=backbone, neck=None,
        head=dict(type='LinearClsHead', num_classes=args.num_classes, in_channels=embed_dims,
                  loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
    if method != 'full':
        cfg['guidance'] = guidance
    return cfg


class Trainer:
    """One method's model and its AdamW optimizer wrapper; :meth:`step` is one training step.

    Args:
        method: a name of ``METHODS``.
        args: the command line (arch, sizes, device, amp).
    """

    def __init__(self, method: str, args: argparse.Namespace) -> None:
        self.method = method
        self.device = torch.device(args.device)
        torch.manual_seed(0)
        self.model = build_model(classifier_cfg(method, args)).to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.lr = 5e-5 if method == 'full' else 1e-3
        self.weight_decay = 0.05 if method == 'full' else 1e-4
        self.amp = args.amp
        self.optim_wrapper = self.new_optim_wrapper()

    def new_optim_wrapper(self) -> OptimWrapper:
        """AdamW in the wrapper ``tools/train.py`` uses (``--amp``: its ``enable_amp`` choice,
        made here by ``--device``)."""
        optimizer = torch.optim.AdamW(self.params, lr=self.lr, weight_decay=self.weight_decay)
        if not self.amp:
            return OptimWrapper(optimizer)
        if self.device.type == 'cuda':
            return AmpOptimWrapper(loss_scale='dynamic', optimizer=optimizer)
        return CPUAmpOptimWrapper(optimizer=optimizer)

    @property
    def tunable_params(self) -> int:
        return count_tunable(self.model)

    def autocast(self):
        """The autocast of the training wrapper (fp16 on CUDA, bf16 on CPU) for eval forwards;
        disabled without ``--amp``."""
        return autocast(device_type=self.device.type, enabled=self.amp)

    def step(self, inputs: Tensor, data_samples: List[DataSample]) -> Tensor:
        """One training step; returns the total loss (a tensor, not synchronised)."""
        with self.optim_wrapper.optim_context(self.model):
            losses = self.model(inputs, data_samples, mode='loss')
        loss, _ = self.model.parse_losses(losses)
        self.optim_wrapper.update_params(loss)
        return loss.detach()

    @torch.no_grad()
    def predict(self, inputs: Tensor) -> Tensor:
        with self.autocast():
            return self.model(inputs, mode='tensor')


def make_batch(args: argparse.Namespace, seed: int = 0) -> Tuple[Tensor, List[DataSample]]:
    """Normalised random images (B x 3 x H x W) and random labels, on ``--device``."""
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(args.batch_size, 3, args.img_size, args.img_size, generator=g)
    labels = torch.randint(args.num_classes, (args.batch_size, ), generator=g)
    device = torch.device(args.device)
    samples = [DataSample().set_gt_label(int(c)).to(device) for c in labels]
    return inputs.to(device), samples


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# timing
def reference_backbones(trainers: Dict[str, Trainer],
                        args: argparse.Namespace) -> Dict[str, nn.Module]:
    """The eval-speed references: MMPretrain's ViT, DAVPTViT with and without prompts (taken
    from the methods' models where they exist)."""
    device = torch.device(args.device)

    def pick(methods: Sequence[str], cfg: dict) -> nn.Module:
        for m in methods:
            if m in trainers:
                return trainers[m].model.backbone
        torch.manual_seed(0)
        return build_model(cfg).to(device)

    P = args.num_prompts
    return {
        'upstream_vit': pick(['full'], upstream_backbone_cfg(args)),
        'davpt_vit_prompts': pick(['davpt', 'vpt_deep', 'davpt_plus'],
                                  davpt_backbone_cfg(args, P, 0)),
        'davpt_vit_no_prompts': pick(['linear'], davpt_backbone_cfg(args, 0, 0)),
    }


def profile_steps(trainers: Dict[str, Trainer], batch: Tuple[Tensor, List[DataSample]],
                  rows: int, path: str) -> None:
    """One profiled training step per method; the top operators by self time go to ``path``."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    cuda = next(iter(trainers.values())).device.type == 'cuda'
    if cuda:
        activities.append(ProfilerActivity.CUDA)
    sort_by = 'self_device_time_total' if cuda else 'self_cpu_time_total'
    with open(path, 'w') as f:
        for name, trainer in trainers.items():
            trainer.model.train()
            trainer.step(*batch)
            with profile(activities=activities) as prof:
                trainer.step(*batch)
                synchronize(trainer.device)
            f.write(f'==== {name}\n')
            f.write(prof.key_averages().table(sort_by=sort_by, row_limit=rows))
            f.write('\n')


# ---------------------------------------------------------------------------------------------
# memory
def memory_child(method: str, args: argparse.Namespace) -> dict:
    """Peak memory of ``--mem-steps`` training steps of one method (runs in a child process)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = Trainer(method, args)
    batch = make_batch(args)
    trainer.model.train()
    if trainer.device.type == 'cuda':
        synchronize(trainer.device)
        base = torch.cuda.memory_allocated(trainer.device)
        torch.cuda.reset_peak_memory_stats(trainer.device)
        for _ in range(args.mem_steps):
            trainer.step(*batch)
        synchronize(trainer.device)
        peak = torch.cuda.max_memory_allocated(trainer.device)
        return dict(peak_mem_mb=(peak - base) / 2**20, peak_mem_total_mb=peak / 2**20,
                    basis='cuda max_memory_allocated - allocated after build')
    # CPU: a first step touches code pages and one-time caches; then forget what it allocated.
    # (update_params ends with zero_grad(set_to_none=True): no gradients are left.)
    resettable = reset_peak_rss()
    if resettable:
        trainer.step(*batch)
        trainer.optim_wrapper = trainer.new_optim_wrapper()
        release_free_heap()
        reset_peak_rss()
        basis = 'cpu VmHWM - VmRSS after build and one discarded step'
    else:
        release_free_heap()
        basis = 'cpu ru_maxrss - VmRSS after build'
    base_kb = rss_kib()['VmRSS']
    for _ in range(args.mem_steps):
        trainer.step(*batch)
    peak_kb = rss_kib()['VmHWM'] if resettable else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(peak_mem_mb=(peak_kb - base_kb) / 1024, peak_mem_total_mb=peak_kb / 1024,
                basis=basis)


def measure_memory(methods: Sequence[str], args: argparse.Namespace) -> Dict[str, dict]:
    """:func:`memory_child` of every method, each in its own fresh process
    (:func:`mmdavpt.utils.memory.measuring_pool`)."""
    with measuring_pool(preload=['torch', 'mmdavpt', 'mmpretrain.models']) as pool:
        return {method: pool.apply(memory_child, (method, args)) for method in methods}


# ---------------------------------------------------------------------------------------------
# remapping
def time_remap(num_classes: int, feat_dim: int, num_prompts: Sequence[int],
               repeats: int) -> Dict[str, dict]:
    """Seconds of one :meth:`SemanticMapping.remap`: the first clustering (k-means++, the
    mapping's default restarts) and a warm start from the previous centroids (medians of
    ``repeats`` fresh mappings, and every repeat: ``first_all_s``, ``warm_all_s``), on class
    means drawn around 25 latent groups."""
    g = torch.Generator().manual_seed(0)
    groups = torch.randn(25, feat_dim, generator=g)
    centers = groups[torch.arange(num_classes) % 25] + 0.5 * torch.randn(
        num_classes, feat_dim, generator=g)
    labels = torch.arange(num_classes).repeat_interleave(8)

    def features() -> Tensor:
        return centers[labels] + 0.3 * torch.randn(len(labels), feat_dim, generator=g)

    out = {}
    for M in num_prompts:
        runs = {'first': [], 'warm': [], 'first_kmeans': [], 'warm_kmeans': []}
        for r in range(repeats):
            mapping = SemanticMapping(num_classes, M, feat_dim, seed=r)
            for kind in ('first', 'warm'):
                mapping.accumulate(features(), labels)
                start = time.perf_counter()
                result = mapping.remap()
                runs[kind].append(time.perf_counter() - start)
                runs[f'{kind}_kmeans'].append(result.kmeans_seconds)
        out[str(M)] = {f'{k}_s': statistics.median(v) for k, v in runs.items()}
        out[str(M)].update(first_all_s=runs['first'], warm_all_s=runs['warm'])
    return out


# ---------------------------------------------------------------------------------------------
def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or not b else a / b


def ratio_pair(a: str, b: str, wall: Dict[str, List[float]], cpu: Dict[str, List[float]],
               confidence: float) -> Tuple[dict, dict]:
    """:func:`paired_ratio_interval` of ``a / b`` over the rounds, of the wall and CPU times."""
    return (paired_ratio_interval(wall[a], wall[b], confidence),
            paired_ratio_interval(cpu[a], cpu[b], confidence))


def checks(report: dict) -> Dict[str, dict]:
    """Each target of the performance issue that this run measured, with its verdict
    (:func:`mmdavpt_lab.timing.check_target`), in the order of :data:`TARGETS`.

    A time ratio's verdict is that of its wall-time interval (what a user waits for), with the
    CPU-time interval's verdict beside it (``cpu``); the remap's is that of the interval of the
    slowest remap (M, first or warm) over ``--remap-repeats``. Peak memory is one measurement
    per method, with no interval: its verdict is that of the value.
    """
    r, ref = report['ratios_vs_vpt_deep'], report['eval_ratio_vs_upstream']
    found = {}
    for name, method in (('train_step davpt / vpt_deep', 'davpt'),
                         ('train_step davpt_plus / vpt_deep', 'davpt_plus')):
        if method in r:
            found[name] = dict(check_target(r[method]['train_step'], TARGETS[name]),
                               cpu=check_target(r[method]['train_step_cpu'], TARGETS[name]))
    for name, key in (('eval backbone with prompts / upstream', 'with_prompts'),
                      ('eval backbone no prompts / upstream', 'no_prompts')):
        found[name] = dict(check_target(ref[key], TARGETS[name]),
                           cpu=check_target(ref[f'{key}_cpu'], TARGETS[name]))
    name = 'peak_mem davpt / vpt_deep'
    mem = r.get('davpt', {}).get('peak_mem')
    if mem is not None:
        found[name] = dict(ratio=mem, low=None, high=None, n=1, limit=TARGETS[name],
                           verdict=MET if mem <= TARGETS[name] else OVER,
                           rounds_to_resolve=None, basis='one measurement per method')
    remap = report['remap']
    if remap:
        M, kind = max(((M, kind) for M in remap for kind in ('first', 'warm')),
                      key=lambda mk: remap[mk[0]][f'{mk[1]}_s'])
        name = 'remap seconds (max over M, first and warm)'
        interval = geometric_mean_interval(remap[M][f'{kind}_all_s'],
                                           report['config']['confidence'])
        found[name] = dict(check_target(interval, TARGETS[name]), slowest=dict(M=int(M),
                                                                               kind=kind))
    return {k: found[k] for k in TARGETS if k in found}


def format_report(report: dict) -> str:
    """Markdown tables: one row per method (like the paper's Table 4), the reference backbones,
    the remaps, and the targets with their verdicts; every ratio with its interval."""
    level = f"{report['config']['confidence']:.0%}"
    head = (f'| Method | Tunable params (M) | Train step (s), median [IQR] | Train ms/img '
            f'| vs VPT-Deep, wall [{level}] | vs VPT-Deep, CPU [{level}] | Peak mem (MB) '
            f'| vs VPT-Deep | Eval img/s | Eval vs VPT-Deep, wall [{level}] '
            f'| Non-finite losses |')
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    bs = report['config']['batch_size']

    def fmt(v, spec):
        return '-' if v is None else format(v, spec)

    for m, res in report['results'].items():
        rat = report['ratios_vs_vpt_deep'].get(m, {})
        step = res['train_step']
        lines.append(
            f"| {LABELS[m]} | {res['tunable_params'] / 1e6:.3f} "
            f"| {step['median_s']:.3f} [{step['iqr_s']:.3f}] "
            f"| {1000 * res['train_step_s'] / bs:.1f} "
            f"| {format_interval(rat.get('train_step'))} "
            f"| {format_interval(rat.get('train_step_cpu'))} "
            f"| {fmt(res['peak_mem_mb'], '.0f')} | {fmt(rat.get('peak_mem'), '.3f')} "
            f"| {res['eval_img_per_s']:.1f} | {format_interval(rat.get('eval_time'))} "
            f"| {res['nonfinite_steps']} |")
    ref, up_ratio = report['reference'], report['eval_ratio_vs_upstream']
    lines.append('')
    lines.append(f'| Backbone forward (eval) | s / batch, median [IQR] | img/s '
                 f'| vs upstream, wall [{level}] | vs upstream, CPU [{level}] |')
    lines.append('|---|---|---|---|---|')
    keys = dict(upstream_vit=None, davpt_vit_prompts='with_prompts',
                davpt_vit_no_prompts='no_prompts')
    for name, v in ref.items():
        key = keys[name]
        wall = '1' if key is None else format_interval(up_ratio[key])
        cpu = '1' if key is None else format_interval(up_ratio[f'{key}_cpu'])
        lines.append(f"| {name} | {v['eval']['median_s']:.4f} [{v['eval']['iqr_s']:.4f}] "
                     f"| {v['eval_img_per_s']:.1f} | {wall} | {cpu} |")
    lines.append(f"\nPrompts / no prompts (eval backbone): wall "
                 f"{format_interval(up_ratio['prompts_vs_no_prompts'])}, CPU "
                 f"{format_interval(up_ratio['prompts_vs_no_prompts_cpu'])}")
    if report['remap']:
        lines.append('')
        lines.append('| remap M | first (s) | warm-started (s) |')
        lines.append('|---|---|---|')
        for M, v in report['remap'].items():
            lines.append(f"| {M} | {v['first_s']:.3f} | {v['warm_s']:.3f} |")
    if report['checks']:
        lines.append('')
        lines.append(f'| Target | Limit | Measured, wall [{level}] | Verdict '
                     f'| Measured, CPU [{level}] | CPU verdict '
                     f'| Rounds to decide (wall, CPU) |')
        lines.append('|---|---|---|---|---|---|---|')
        for name, c in report['checks'].items():
            cpu = c.get('cpu')
            needed = [c['rounds_to_resolve'], cpu and cpu['rounds_to_resolve']]
            undecided = [c['verdict'] == CANNOT_TELL, cpu and cpu['verdict'] == CANNOT_TELL]
            value = f"{c['ratio']:.3f} ({c['basis']})" if 'basis' in c else format_interval(c)
            lines.append(
                f"| {name} | {c['limit']} | {value} "
                f"| {c['verdict']} | {format_interval(cpu)} | {cpu['verdict'] if cpu else '-'} "
                f"| {', '.join(_rounds(n, u) for n, u in zip(needed, undecided))} |")
    lines.append('')
    lines.append(machine_line(report))
    return '\n'.join(lines)


def _rounds(needed: Optional[int], undecided: bool) -> str:
    """The table's entry for :func:`rounds_to_resolve`: ``-`` when decided, ``~N``, or ``?``
    when no number of rounds of this spread would decide."""
    if not undecided:
        return '-'
    return '?' if needed is None else f'~{needed}'


def machine_line(report: dict) -> str:
    """One line of the machine state: rounds, load average before and after, threads, CPU,
    torch."""
    cfg, m = report['config'], report['machine']
    before = ' '.join(f'{v:.2f}' for v in report['load_before'])
    after = ' '.join(f'{v:.2f}' for v in report['load_after'])
    gpu = f"; GPU {m['gpu']}" if 'gpu' in m else ''
    return (f"{cfg['rounds']} rounds (+{cfg['warmup']} warm-up), {cfg['eval_rounds']} eval "
            f"rounds; load average (1, 5, 15 min) {before} before, {after} after; "
            f"{m['torch_threads']} torch threads, {m['cpu_count']} cores ({m['cpu_model']})"
            f"{gpu}; torch {m['torch']}; {report['seconds']:.0f} s")


def measure_speed(methods: Sequence[str], args: argparse.Namespace) -> dict:
    """Train-step and eval times of every method and the eval times of the reference
    backbones, all models in this process, stepped round-robin.

    Returns:
        ``dict(train_wall, train_cpu, eval_wall, eval_cpu, losses, tunable)``: the seconds of
        every timed round per model (``round_robin``'s), the total loss of every training step,
        the tunable parameter counts.
    """
    device = torch.device(args.device)
    clock = clock_for(device)
    trainers = {m: Trainer(m, args) for m in methods}
    inputs, samples = make_batch(args)
    losses = {m: [] for m in methods}
    for t in trainers.values():
        t.model.train()
    train_wall, train_cpu = round_robin(
        methods, {m: (lambda t=t: t.step(inputs, samples)) for m, t in trainers.items()},
        args.rounds, args.warmup, clock, check=lambda m, loss: losses[m].append(float(loss)))
    if args.profile:
        profile_steps(trainers, (inputs, samples), args.profile,
                      osp.splitext(args.out)[0] + '_profile.txt')

    refs = reference_backbones(trainers, args)
    for module in [t.model for t in trainers.values()] + list(refs.values()):
        module.eval()
    autocast = next(iter(trainers.values())).autocast

    def backbone_forward(b: nn.Module) -> Callable[[], object]:
        def fn():
            with torch.no_grad(), autocast():
                return b(inputs)
        return fn

    eval_fns = {m: (lambda t=t: t.predict(inputs)) for m, t in trainers.items()}
    eval_fns.update({n: backbone_forward(b) for n, b in refs.items()})
    eval_wall, eval_cpu = round_robin(list(eval_fns), eval_fns, args.eval_rounds, args.warmup,
                                      clock)
    return dict(train_wall=train_wall, train_cpu=train_cpu, eval_wall=eval_wall,
                eval_cpu=eval_cpu, losses=losses,
                tunable={m: t.tunable_params for m, t in trainers.items()})


def run(args: argparse.Namespace) -> dict:
    """The whole benchmark; returns the report (see the module docstring)."""
    methods = [m for m in args.methods.split(',') if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise ValueError(f'unknown methods {unknown}; choose from {METHODS}')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    start = time.perf_counter()
    report = dict(config=vars(args).copy(), machine=machine_state(device),
                  started=datetime.now(UTC).isoformat(timespec='seconds'),
                  load_before=os.getloadavg())

    speed = measure_speed(methods, args)
    release_free_heap()
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    threads, conf = report['machine']['torch_threads'], args.confidence
    train_wall, train_cpu = speed['train_wall'], speed['train_cpu']
    eval_wall, eval_cpu, losses = speed['eval_wall'], speed['eval_cpu'], speed['losses']
    memory = measure_memory(methods, args) if args.mem_steps > 0 else {}
    results = {}
    for m in methods:
        mem = memory.get(m, {})
        step, evals = spread(train_wall[m], m, threads), spread(eval_wall[m], m, threads)
        results[m] = dict(
            train_step_s=step['median_s'],
            peak_mem_mb=mem.get('peak_mem_mb'),
            eval_img_per_s=args.batch_size / evals['median_s'],
            tunable_params=speed['tunable'][m],
            train_step=step,
            train_step_cpu=spread(train_cpu[m], m, threads),
            train_step_all_s=train_wall[m],
            train_step_cpu_all_s=train_cpu[m],
            peak_mem_total_mb=mem.get('peak_mem_total_mb'),
            eval=evals,
            eval_cpu=spread(eval_cpu[m], m, threads),
            eval_all_s=eval_wall[m],
            eval_cpu_all_s=eval_cpu[m],
            final_loss=losses[m][-1],
            nonfinite_steps=sum(not torch.isfinite(torch.tensor(v)) for v in losses[m]))
    report['memory_basis'] = next(iter(memory.values()))['basis'] if memory else None
    report['results'] = results
    vpt = results.get('vpt_deep')
    report['ratios_vs_vpt_deep'] = {}
    for m, r in results.items():
        if vpt is None:
            break
        train, train_c = ratio_pair(m, 'vpt_deep', train_wall, train_cpu, conf)
        evals, evals_c = ratio_pair(m, 'vpt_deep', eval_wall, eval_cpu, conf)
        report['ratios_vs_vpt_deep'][m] = dict(
            train_step=train, train_step_cpu=train_c, eval_time=evals, eval_time_cpu=evals_c,
            peak_mem=ratio(r['peak_mem_mb'], vpt['peak_mem_mb']))
    refs = ('upstream_vit', 'davpt_vit_prompts', 'davpt_vit_no_prompts')
    report['reference'] = {}
    for n in refs:
        evals = spread(eval_wall[n], n, threads)
        report['reference'][n] = dict(
            eval_s=evals['median_s'], eval_img_per_s=args.batch_size / evals['median_s'],
            eval=evals, eval_cpu=spread(eval_cpu[n], n, threads), eval_all_s=eval_wall[n],
            eval_cpu_all_s=eval_cpu[n])
    pairs = dict(with_prompts=('davpt_vit_prompts', 'upstream_vit'),
                 no_prompts=('davpt_vit_no_prompts', 'upstream_vit'),
                 prompts_vs_no_prompts=('davpt_vit_prompts', 'davpt_vit_no_prompts'))
    report['eval_ratio_vs_upstream'] = {}
    for key, (a, b) in pairs.items():
        wall, cpu = ratio_pair(a, b, eval_wall, eval_cpu, conf)
        report['eval_ratio_vs_upstream'].update({key: wall, f'{key}_cpu': cpu})
    prompts = [int(m) for m in args.remap_prompts.split(',') if m]
    report['remap'] = time_remap(args.remap_classes, args.remap_dim, prompts,
                                 args.remap_repeats) if prompts else {}
    report['checks'] = checks(report)
    report['load_after'] = os.getloadavg()
    report['seconds'] = time.perf_counter() - start
    return report


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', choices=ARCHS, default='b',
                        help="MMPretrain's arch names: ViT-S/14 (DINOv2), ViT-B/16, ViT-L/16; "
                        "'tiny' for tests")
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--methods', default=','.join(METHODS),
                        help=f'comma-separated subset of {",".join(METHODS)}')
    parser.add_argument('--rounds', '--steps', dest='rounds', type=int, default=10,
                        help='timed round-robin rounds of training steps (one step per method '
                        'each): more rounds narrow the intervals')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed rounds before the timed ones (training and eval)')
    parser.add_argument('--eval-rounds', '--eval-steps', dest='eval_rounds', type=int,
                        default=None, help='timed rounds of eval forwards (default: --rounds)')
    parser.add_argument('--confidence', type=float, default=0.95,
                        help='two-sided coverage of the intervals')
    parser.add_argument('--mem-steps', type=int, default=2,
                        help='training steps of the memory child per method (0: no memory)')
    parser.add_argument('--num-prompts', type=int, default=10,
                        help='prompts per layer (also M, the guided prompts of DA-VPT)')
    parser.add_argument('--num-classes', type=int, default=100)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision as tools/train.py --amp: bf16 autocast on CPU, '
                        'fp16 autocast with dynamic loss scaling on CUDA')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch intra-op threads (0: leave the default)')
    parser.add_argument('--remap-classes', type=int, default=200)
    parser.add_argument('--remap-dim', type=int, default=768)
    parser.add_argument('--remap-prompts', default='10,20,40,60',
                        help="comma-separated M values ('' skips the remap timing)")
    parser.add_argument('--remap-repeats', type=int, default=3)
    parser.add_argument('--profile', type=int, default=0, metavar='ROWS',
                        help='also profile one step per method; top ROWS operators go to '
                             'OUT_profile.txt')
    parser.add_argument('--out', required=True, help='the JSON report')
    args = parser.parse_args(argv)
    if args.eval_rounds is None:
        args.eval_rounds = args.rounds
    if args.rounds < 1 or args.eval_rounds < 1 or args.warmup < 0 or args.mem_steps < 0:
        parser.error('--rounds and --eval-rounds must be >= 1, --warmup and --mem-steps >= 0')
    if not 0 < args.confidence < 1:
        parser.error(f'--confidence must lie between 0 and 1, got {args.confidence}')
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    report = run(args)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=2)
    print(format_report(report))
    print(f'report: {args.out}')
    return report


if __name__ == '__main__':
    main()
