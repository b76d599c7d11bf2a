"""Training memory of a segmentation config, with and without activation checkpointing (with_cp).

    python tools/analysis/seg_memory.py [CONFIG] [--size 128] [--batch 2] [--full-size 512]
                                        [--device cpu|cuda] [--out REPORT.json]

Two tables, each setting in a child process of its own (with ``--device cuda`` the first is
measured on the GPU at full scale, see 3.):

1. Measured on CPU at small scale: the config's real model (random weights) at ``--size`` pixels,
   ``--batch`` images, one training step (``model.train_step`` with the config's optimizer) after a
   warm-up step. ``peak RSS`` is the process' resident-set high-water mark (``VmHWM``, reset before
   the step through ``/proc/self/clear_refs``) minus its RSS before the step; glibc is told to give
   large blocks back (``MALLOC_MMAP_THRESHOLD_``) so RSS follows the live tensors. ``tracked`` is
   the peak of the live tensor storages created during the step, counted op by op
   (:class:`LiveMemory`); the two should agree, which validates the second table.
2. Counted at full scale on the ``meta`` device (no compute, no memory): the same model at
   ``--full-size`` pixels, two training steps (forward, the heads' cross-entropy losses, backward,
   the optimizer), every storage an op creates counted while it lives. Attention is counted as the
   fused kernels keep it on a GPU (q, k, v, output and log-sum-exp saved; no L x L map). The DA-VPT
   guidance losses are left out here (they need real values; their tensors are a few MB).
   ``static`` = parameters and buffers; ``peak`` = static + the peak of everything else (gradients,
   optimizer state, activations). A GPU adds its CUDA context (~0.5 GB) and allocator slack.
3. ``--device cuda``: instead of 1., the config's real model (random weights) at ``--full-size``
   pixels on the GPU, ``--batch`` images. ``static`` is ``torch.cuda.memory_allocated`` after the
   model is moved there; ``peak`` is ``torch.cuda.max_memory_allocated`` over two training steps
   (``model.train_step``, the config's optimizer), first without the DA-VPT guidance losses (what
   2. counts, so the two compare one to one), then with them (what training allocates);
   ``reserved`` is ``max_memory_reserved`` (the caching allocator's footprint, without the CUDA
   context); ``step_s`` is the median of ``--timed-steps`` further steps with the guidance,
   synchronised before each clock read.

``--out`` writes every figure of the tables to a JSON report.
"""
import argparse
import json
import os
import os.path as osp
import weakref
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional

from mmdavpt.utils.memory import measuring_pool, reset_peak_rss, rss_kib

DEFAULT_CONFIG = 'configs/segmentation/setr_pup_davpt_vit-l_8xb2-160k_ade20k-512x512.py'
MIB = 2**20


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', default=DEFAULT_CONFIG)
    parser.add_argument('--size', type=int, default=128, help='crop size of the CPU measurement')
    parser.add_argument('--batch', type=int, default=2, help='images per step')
    parser.add_argument('--full-size', type=int, default=512,
                        help='crop size of the meta-device count (0: skip it)')
    parser.add_argument('--full-config', default=None,
                        help='a second config counted at full size without with_cp (e.g. full '
                        'fine-tuning)')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu',
                        help='cuda: measure on the GPU at --full-size instead of on the CPU at '
                        '--size')
    parser.add_argument('--timed-steps', type=int, default=5,
                        help='--device cuda: timed training steps per setting')
    parser.add_argument('--out', help='write the report (every figure) to this JSON file')
    args = parser.parse_args(argv)
    if args.device == 'cuda' and not args.full_size:
        parser.error('--device cuda measures at --full-size, which must be > 0')
    if args.timed_steps < 1:
        parser.error('--timed-steps must be >= 1')
    return args


# ---------------------------------------------------------------------------------------------
def _live_memory_mode():
    import torch
    from torch.utils import _pytree as pytree
    from torch.utils._python_dispatch import TorchDispatchMode

    class LiveMemory(TorchDispatchMode):
        """Bytes of the tensor storages created inside the mode that are still alive, and their
        peak. Storages that exist before (``ignore``) are not counted; views cost nothing."""

        def __init__(self, ignore=()) -> None:
            super().__init__()
            self.live = 0
            self.peak = 0
            self._known = {t.untyped_storage()._cdata for t in ignore}

        def _free(self, key: int, nbytes: int) -> None:
            self.live -= nbytes
            self._known.discard(key)

        def reset_peak(self) -> None:
            self.peak = self.live

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in pytree.tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    storage = t.untyped_storage()
                    key = storage._cdata
                    if key not in self._known:
                        nbytes = storage.nbytes()
                        self._known.add(key)
                        self.live += nbytes
                        self.peak = max(self.peak, self.live)
                        weakref.finalize(storage, self._free, key, nbytes)
            return out

    return LiveMemory


def _flash_like_sdpa():
    """``scaled_dot_product_attention`` for the meta device that keeps what the fused GPU kernels
    keep for backward (q, k, v, output, log-sum-exp) instead of the math path's L x L map."""
    import torch

    class FusedAttention(torch.autograd.Function):

        @staticmethod
        def forward(ctx, q, k, v):
            out = torch.empty_like(q)
            lse = q.new_empty(q.shape[:-1])  # B x heads x L
            ctx.save_for_backward(q, k, v, out, lse)
            return out

        @staticmethod
        def backward(ctx, grad):
            q, k, v, _, _ = ctx.saved_tensors
            return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    def sdpa(q, k, v, attn_mask=None, dropout_p=0., is_causal=False, scale=None, **kwargs):
        if attn_mask is not None or is_causal:
            raise NotImplementedError('masked attention is not modelled')
        return FusedAttention.apply(q, k, v)

    return sdpa


@contextmanager
def fused_attention_on_meta() -> Iterator[None]:
    """Route ``F.scaled_dot_product_attention`` (and MMPretrain's alias, bound when its attention
    modules are built) through :func:`_flash_like_sdpa` inside the block."""
    import mmpretrain.models.utils.attention as mmpretrain_attention
    import torch.nn.functional as F

    saved = F.scaled_dot_product_attention, mmpretrain_attention.scaled_dot_product_attention
    F.scaled_dot_product_attention = mmpretrain_attention.scaled_dot_product_attention = \
        _flash_like_sdpa()
    try:
        yield
    finally:
        F.scaled_dot_product_attention, mmpretrain_attention.scaled_dot_product_attention = saved


def _build(config: str, size: int, with_cp: Optional[bool], meta: bool):
    import torch
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import mmdavpt  # noqa: F401
    if not MMLogger.check_instance_created('seg_memory'):  # no per-parameter optimizer logs
        MMLogger.get_instance('seg_memory', log_level='WARNING')
    init_default_scope('mmseg')
    cfg = Config.fromfile(config)
    backbone = cfg.model.backbone
    backbone.init_cfg = None
    backbone.img_size = (size, size)
    if with_cp is not None:
        backbone.with_cp = with_cp
    cfg.model.data_preprocessor.size = (size, size)
    if 'test_cfg' in cfg.model:
        cfg.model.test_cfg = dict(mode='whole')
    if cfg.model.get('guidance'):
        # no SemanticMappingHook runs here: the placeholder class->prompt mapping, which costs
        # what a computed one does
        cfg.model.guidance.setdefault('mapping', {})['fixed'] = True
    with torch.device('meta' if meta else 'cpu'):
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.train()
    return cfg, model


def _seg_batch(batch: int, size: int, num_classes: int):
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen))
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size)))
        # blocks of one class, as real masks are (majority patch labels are then well defined)
        blocks = torch.randint(0, num_classes, (1, size // 32 + 1, size // 32 + 1), generator=gen)
        labels = blocks.repeat_interleave(32, 1).repeat_interleave(32, 2)[:, :size, :size]
        sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def measure_training_memory(config: str, size: int, batch: int, with_cp: bool) -> dict:
    """One CPU training step: ``rss_peak`` (the step's RSS high-water mark over the RSS before it)
    and ``tracked_peak`` (peak of the live tensor storages created in the step), in bytes.
    Resets the process' ``VmHWM``: run it in a process of its own."""
    import torch
    from mmengine.optim import build_optim_wrapper

    torch.manual_seed(0)
    cfg, model = _build(config, size, with_cp, meta=False)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    data = _seg_batch(batch, size, model.decode_head.num_classes)
    model.train_step(data, optim_wrapper)  # warm-up: optimizer state, first-call caches
    optim_wrapper.zero_grad(set_to_none=True)
    if not reset_peak_rss():
        raise OSError('cannot reset VmHWM through /proc/self/clear_refs')
    before = rss_kib()['VmRSS']
    model.train_step(data, optim_wrapper)
    rss_peak = (rss_kib()['VmHWM'] - before) * 1024
    optim_wrapper.zero_grad(set_to_none=True)
    tensors = [*model.parameters(), *model.buffers()]
    tensors += [*(s for st in optim_wrapper.optimizer.state.values() for s in st.values()
                  if isinstance(s, torch.Tensor))]
    with _live_memory_mode()(ignore=tensors) as live:
        model.train_step(data, optim_wrapper)
    return dict(rss_peak=rss_peak, tracked_peak=live.peak)


def measure_cuda_memory(config: str, size: int, batch: int, with_cp: bool,
                        timed_steps: int = 5, device: str = 'cuda') -> dict:
    """Training on the GPU ``device``: ``static``, ``peak_no_guidance``, ``peak``, ``reserved``
    in bytes and ``step_s`` in seconds (see the module docstring, 3.). Resets the CUDA peak
    statistics: run it in a process of its own."""
    import statistics
    import time

    import torch
    from mmengine.optim import build_optim_wrapper

    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('--device cuda: torch sees no CUDA device')
    torch.manual_seed(0)
    cfg, model = _build(config, size, with_cp, meta=False)
    model.to(device)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    data = _seg_batch(batch, size, model.decode_head.num_classes)
    torch.cuda.synchronize(device)
    static = torch.cuda.memory_allocated(device)

    def peak_of_two_steps() -> int:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(2):
            model.train_step(data, optim_wrapper)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)

    # First as the meta-device count sees it: without its guidance the segmentor runs the
    # backbone's forward(), which returns no taps, and computes no guidance loss.
    guidance = getattr(model, 'guidance', None)
    if guidance is not None:
        model.guidance = None
    peak_no_guidance = peak_of_two_steps()
    if guidance is not None:
        model.guidance = guidance
    peak = peak_of_two_steps()
    reserved = torch.cuda.max_memory_reserved(device)
    times = []
    for _ in range(timed_steps):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        model.train_step(data, optim_wrapper)
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return dict(static=static, peak_no_guidance=peak_no_guidance, peak=peak, reserved=reserved,
                step_s=statistics.median(times), guidance=guidance is not None,
                gpu=torch.cuda.get_device_name(device))


def count_training_memory(config: str, size: int, batch: int, with_cp: Optional[bool]) -> dict:
    """Two training steps on the meta device: ``static`` (parameters and buffers) and ``peak``
    (static + the peak of all other live storages), in bytes. ``with_cp=None`` keeps the
    config's setting."""
    with fused_attention_on_meta():
        return _count_training_memory(config, size, batch, with_cp)


def _count_training_memory(config: str, size: int, batch: int, with_cp: Optional[bool]) -> dict:
    import torch
    from mmengine.optim import build_optim_wrapper
    from mmseg.models.utils import resize

    cfg, model = _build(config, size, with_cp, meta=True)
    if getattr(model, 'guidance', None) is not None:
        model.guidance = None
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    heads = [model.decode_head, *getattr(model, 'auxiliary_head', [])]
    static = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    with torch.device('meta'):
        inputs = torch.empty(batch, 3, size, size)
        labels = torch.zeros(batch, size, size, dtype=torch.long)
    with _live_memory_mode()(ignore=[*model.parameters(), *model.buffers(), inputs, labels]) \
            as live:
        for _ in range(2):
            feats = model.extract_feat(inputs)
            loss = 0
            for head in heads:
                logits = resize(head(feats), size=(size, size), mode='bilinear',
                                align_corners=head.align_corners)
                loss = loss + head.loss_decode(logits, labels, ignore_index=head.ignore_index)
            del feats, logits
            optim_wrapper.update_params(loss)
            del loss
    return dict(static=static, peak=static + live.peak)


# ---------------------------------------------------------------------------------------------
def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    report = dict(config=args.config, device=args.device, batch=args.batch, measured=[],
                  counted=[])
    # the measuring processes inherit this environment: one thread, no warnings
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    os.environ['PYTHONWARNINGS'] = 'ignore'
    with measuring_pool(preload=['torch', 'mmdavpt', 'mmseg.models']) as pool:
        _report(args, report, pool.apply)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=2)
    return report


def _report(args: argparse.Namespace, report: dict, run: Callable) -> None:
    """Run every setting of ``args`` with ``run(fn, kwds=...)`` (a fresh process of the measuring
    pool each); print the tables and fill ``report``."""
    name = osp.basename(args.config)
    settings = [(args.config, False), (args.config, True)]
    if args.full_config:
        settings.append((args.full_config, None))
    if args.device == 'cuda':
        size = args.full_size
        print(f'{name}\n\nMeasured on CUDA: {args.batch} x {size}x{size}, two training steps')
        print('| config | with_cp | static (GiB) | peak, no guidance (GiB) | peak (GiB) '
              '| reserved (GiB) | step (s) |')
        print('|---|---|---|---|---|---|---|')
        for config, with_cp in settings:
            r = run(measure_cuda_memory, kwds=dict(config=config, size=size, batch=args.batch,
                                                   with_cp=with_cp, timed_steps=args.timed_steps))
            report['measured'].append(dict(config=config, with_cp=with_cp, size=size, **r))
            print(f'| {osp.basename(config)} | {with_cp if with_cp is not None else "-"} '
                  f'| {r["static"] / 2**30:.2f} | {r["peak_no_guidance"] / 2**30:.2f} '
                  f'| {r["peak"] / 2**30:.2f} | {r["reserved"] / 2**30:.2f} '
                  f'| {r["step_s"]:.3f} |', flush=True)
    else:
        print(f'{name}\n\nMeasured on CPU: {args.batch} x {args.size}x{args.size}, one training '
              'step')
        print('| with_cp | peak RSS over the step (MiB) | tracked tensors (MiB) |')
        print('|---|---|---|')
        for with_cp in (False, True):
            r = run(measure_training_memory, kwds=dict(config=args.config, size=args.size,
                                                       batch=args.batch, with_cp=with_cp))
            report['measured'].append(dict(config=args.config, with_cp=with_cp, size=args.size,
                                           **r))
            print(f'| {with_cp} | {r["rss_peak"] / MIB:.0f} | {r["tracked_peak"] / MIB:.0f} |',
                  flush=True)

    if args.full_size:
        print(f'\nCounted on the meta device: {args.batch} x {args.full_size}x{args.full_size}, '
              'training step')
        print('| config | with_cp | static (GiB) | peak (GiB) |')
        print('|---|---|---|---|')
        for config, with_cp in settings:
            r = run(count_training_memory, kwds=dict(config=config, size=args.full_size,
                                                     batch=args.batch, with_cp=with_cp))
            report['counted'].append(dict(config=config, with_cp=with_cp, size=args.full_size,
                                          **r))
            print(f'| {osp.basename(config)} | {with_cp if with_cp is not None else "-"} | '
                  f'{r["static"] / 2**30:.2f} | {r["peak"] / 2**30:.2f} |', flush=True)
    if args.device == 'cuda' and report['counted']:
        report['measured_vs_counted'] = compare(report['measured'], report['counted'])
        print('\n| config | with_cp | measured peak, no guidance / meta-device count '
              '| guidance adds (MiB) |')
        print('|---|---|---|---|')
        for c in report['measured_vs_counted']:
            print(f'| {osp.basename(c["config"])} | {c["with_cp"]} | {c["ratio"]:.3f} '
                  f'| {c["guidance_bytes"] / MIB:.1f} |')


def compare(measured: List[dict], counted: List[dict]) -> List[dict]:
    """CUDA measurements against the meta-device counts of the same (config, with_cp):
    ``ratio`` = measured peak without guidance / counted peak; ``guidance_bytes`` = what the
    guidance losses add to the measured peak."""
    counts = {(c['config'], c['with_cp']): c for c in counted}
    out = []
    for m in measured:
        c = counts.get((m['config'], m['with_cp']))
        if c is not None:
            out.append(dict(config=m['config'], with_cp=m['with_cp'],
                            measured_peak_no_guidance=m['peak_no_guidance'],
                            counted_peak=c['peak'], ratio=m['peak_no_guidance'] / c['peak'],
                            guidance_bytes=m['peak'] - m['peak_no_guidance']))
    return out


if __name__ == '__main__':
    main()
