"""Compare training recipes over seeds: what ``tools/analysis/compare_methods.py``,
``tools/demo_cls.py`` and ``tools/demo_seg.py`` run.

A *run* is one (method, seed): a training as ``tools/train.py`` does it and tests as
``tools/test.py`` does them of the checkpoint it selects (:func:`selection`: the best-val
checkpoint when the config keeps one, else the final one), all in one process per run
(:mod:`mmdavpt_lab.run`, started by :func:`run_one` through :func:`run_process`; this module
does not import it). Each run leaves a :data:`RESULT_FILE` in its work dir (the marker that it
finished, so a rerun skips it, but only for the same run: :func:`check_result`);
:func:`summarize` turns the runs into per-method mean ± std over seeds and the paired difference
to a baseline with a t interval over seeds; :func:`run_comparison` does all of it.
"""
import argparse
import glob
import hashlib
import json
import math
import multiprocessing
import os
import os.path as osp
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction
from scipy import stats

from mmdavpt.utils import workdir
from mmdavpt.utils.params import count_config_tunable
from mmdavpt_lab.attention import SHARES_JSON
from mmdavpt_lab.child import main_in_child

#: The per-run result, written in the run's work dir once its training and tests are done.
RESULT_FILE = 'compare_result.json'

#: The test metric compared, per MMEngine default scope.
METRICS = {'mmseg': 'mIoU', 'mmpretrain': 'accuracy/top1'}

#: Names of the keys of a run's ``metrics``: the test modes and the best validation value.
MODE_LABELS = {'ss': 'single-scale', 'tta': 'TTA', 'val': 'best val'}

#: Written in a run's work dir when its training ended without an error (JSON:
#: ``train_seconds`` and the training's :func:`run_identity`, ``config`` and ``cfg_options``).
TRAINED_FILE = 'train.done'

#: The output of a run's process (:mod:`mmdavpt_lab.run`), appended to on a rerun.
RUN_LOG = 'run.out'

#: Where the guided models' CLS attention shares are written in a run's work dir
#: (:func:`mmdavpt_lab.attention.write_shares`).
ATTENTION_DIR = 'attention'


def metric_labels(metric: str) -> Dict[str, str]:
    """:data:`MODE_LABELS` for a metric: a classification test has one mode, called 'test'."""
    return dict(MODE_LABELS, ss='test') if metric == METRICS['mmpretrain'] else dict(MODE_LABELS)


def read_test_metrics(work_dir: str) -> Dict[str, float]:
    """The metrics of the latest ``runner.test()`` in ``work_dir``
    (:func:`mmdavpt.utils.workdir.evaluation_runs`).

    Raises:
        FileNotFoundError: no test metrics in ``work_dir``.
    """
    runs = workdir.evaluation_runs(work_dir)
    if not runs:
        raise FileNotFoundError(
            f'no test metrics ({{timestamp}}/{{timestamp}}.json) under {work_dir}')
    return runs[-1].metrics


def seconds_per_step(work_dir: str) -> Optional[float]:
    """Mean logged training iteration time of the latest training in ``work_dir``
    (:func:`mmdavpt.utils.workdir.seconds_per_step` of its ``vis_data/scalars.json``); ``None``
    when nothing was logged."""
    return workdir.seconds_per_step(workdir.train_scalars(work_dir))


def mean_std(values: Sequence[float]) -> tuple:
    """(mean, sample standard deviation); the deviation is ``nan`` for fewer than 2 values."""
    n = len(values)
    if n == 0:
        raise ValueError('mean_std needs at least one value')
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def paired_t_interval(a: Sequence[float], b: Sequence[float],
                      confidence: float = 0.95) -> Dict[str, float]:
    """Mean of the paired differences ``a - b`` and its Student-t confidence interval.

    Args:
        a, b: the metric of two methods on the same seeds, in the same order.
        confidence: two-sided coverage of the interval.

    Returns:
        ``dict(mean, low, high, n)``; ``low`` and ``high`` are ``nan`` for one pair.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f'paired_t_interval needs two equally long, non-empty lists, got '
                         f'{len(a)} and {len(b)} values')
    diffs = [x - y for x, y in zip(a, b)]
    mean, std = mean_std(diffs)
    n = len(diffs)
    if n < 2:
        return dict(mean=mean, low=math.nan, high=math.nan, n=n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return dict(mean=mean, low=mean - half, high=mean + half, n=n)


def summarize(runs: Iterable[dict], metric_keys: Sequence[str], baseline: Optional[str] = None,
              confidence: float = 0.95) -> Dict[str, dict]:
    """Per-method statistics of finished runs.

    Args:
        runs: run results, each with ``method``, ``seed``, ``metrics`` ({key: value}) and
            optionally ``tunable_params`` and ``seconds_per_step``.
        metric_keys: the keys of ``metrics`` to summarise (e.g. ``('ss', 'tta')``).
        baseline: the method the others are paired with (over the seeds both have).
        confidence: coverage of the paired interval.

    Returns:
        ``{method: dict(seeds, <key>=dict(values, mean, std, diff), tunable_params,
        seconds_per_step, attention)}`` in first-seen method order; ``diff`` (a
        :func:`paired_t_interval` dict with the paired ``seeds`` and the two methods' means over
        them, ``method_mean`` and ``baseline_mean``) only for methods other than the baseline
        that share a seed with it; ``attention``
        the mean over seeds of the runs' :func:`attention_shares` (``None`` without any).
    """
    by_method: Dict[str, Dict[int, dict]] = {}
    for run in runs:
        by_method.setdefault(run['method'], {})[int(run['seed'])] = run
    if baseline is not None and baseline not in by_method:
        raise ValueError(f'baseline {baseline!r} has no finished run; methods: '
                         f'{sorted(by_method)}')
    summary = {}
    for method, seeds in by_method.items():
        order = sorted(seeds)
        entry: dict = dict(seeds=order)
        for key in metric_keys:
            values = [float(seeds[s]['metrics'][key]) for s in order
                      if key in seeds[s]['metrics']]
            if not values:
                continue
            mean, std = mean_std(values)
            stat = dict(values=values, mean=mean, std=std)
            if baseline is not None and method != baseline:
                base = by_method[baseline]
                common = [s for s in order if s in base and key in seeds[s]['metrics']
                          and key in base[s]['metrics']]
                if common:
                    a = [float(seeds[s]['metrics'][key]) for s in common]
                    b = [float(base[s]['metrics'][key]) for s in common]
                    stat['diff'] = dict(paired_t_interval(a, b, confidence), seeds=common,
                                        method_mean=sum(a) / len(a),
                                        baseline_mean=sum(b) / len(b))
            entry[key] = stat
        params = {seeds[s].get('tunable_params') for s in order} - {None}
        entry['tunable_params'] = params.pop() if len(params) == 1 else None
        steps = [seeds[s]['seconds_per_step'] for s in order
                 if seeds[s].get('seconds_per_step') is not None]
        entry['seconds_per_step'] = sum(steps) / len(steps) if steps else None
        shares = [seeds[s]['attention'] for s in order if seeds[s].get('attention')]
        entry['attention'] = None if not shares else dict(
            layer=shares[0]['layer'], seeds=len(shares),
            positive=sum(a['positive'] for a in shares) / len(shares),
            other=sum(a['other'] for a in shares) / len(shares))
        summary[method] = entry
    return summary


def _num(value: Optional[float], digits: int = 2) -> str:
    return '-' if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f'{value:.{digits}f}'


def format_summary(summary: Dict[str, dict], metric_keys: Sequence[str],
                   labels: Optional[Dict[str, str]] = None, baseline: Optional[str] = None,
                   confidence: float = 0.95) -> str:
    """A Markdown table of :func:`summarize`'s output: per metric the mean ± std over seeds and
    the paired difference to the baseline with its interval (followed by its seeds where they
    are not all the seeds of both methods)."""
    labels = labels or {}
    level = f'{confidence:.0%}'
    header = ['Method', 'Seeds']
    for key in metric_keys:
        name = labels.get(key, key)
        header.append(f'{name} mean ± std')
        if baseline is not None:
            header.append(f'{name} - {baseline} [{level} t interval]')
    header += ['Tunable params', 's/step']
    shares = any(entry.get('attention') for entry in summary.values())
    if shares:
        header.append('CLS attention: positive prompt / other prompt')
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for method, entry in summary.items():
        row = [method, ','.join(str(s) for s in entry['seeds'])]
        for key in metric_keys:
            stat = entry.get(key)
            row.append('-' if stat is None else f'{_num(stat["mean"])} ± {_num(stat["std"])}')
            if baseline is not None:
                diff = (stat or {}).get('diff')
                cell = '-' if diff is None else \
                    f'{diff["mean"]:+.2f} [{_num(diff["low"])}, {_num(diff["high"])}]'
                if diff is not None and not (diff['seeds'] == entry['seeds']
                                             == summary[baseline]['seeds']):
                    cell += f' (seeds {",".join(str(s) for s in diff["seeds"])})'
                row.append(cell)
        params = entry.get('tunable_params')
        row.append('-' if params is None else f'{params / 1e3:.1f}k')
        row.append(_num(entry.get('seconds_per_step'), 3))
        if shares:
            att = entry.get('attention')
            row.append('-' if not att else
                       f'{100 * att["positive"]:.1f}% / {100 * att["other"]:.1f}%')
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)


def plot_runs(runs: Iterable[dict], metric_keys: Sequence[str], path: str,
              labels: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Plot the metric of every run (one panel per metric, one column of points per method,
    the seeds labelled) to ``path``. Returns ``None`` when done, else why not (matplotlib
    missing)."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f'no plot: matplotlib is not installed ({e})'
    runs = list(runs)
    methods = list(dict.fromkeys(r['method'] for r in runs))
    labels = labels or {}
    fig, axes = plt.subplots(1, len(metric_keys), figsize=(1.5 + 1.4 * len(methods)
                                                           * len(metric_keys), 3.5),
                             squeeze=False)
    for ax, key in zip(axes[0], metric_keys):
        for i, method in enumerate(methods):
            points = sorted((r['seed'], r['metrics'][key]) for r in runs
                            if r['method'] == method and key in r['metrics'])
            if not points:
                continue
            ys = [y for _, y in points]
            ax.scatter([i] * len(ys), ys, s=18)
            for seed, y in points:
                ax.annotate(str(seed), (i, y), textcoords='offset points', xytext=(4, -3),
                            fontsize=7)
            ax.hlines(sum(ys) / len(ys), i - 0.25, i + 0.25, colors='k', linewidth=1)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(methods, rotation=30, ha='right', fontsize=8)
        ax.set_ylabel(labels.get(key, key))
        ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def schedule_options(cfg, iters: Optional[int] = None, *,
                     epochs: Optional[int] = None) -> List[str]:
    """``--cfg-options`` that shorten the schedule to ``iters`` iterations (an iteration-based
    loop) or ``epochs`` epochs (an epoch-based one); give one of the two.

    Sets ``train_cfg.max_iters`` (``max_epochs``) and moves to the new length the ``end`` of
    every ``param_scheduler`` entry that ends after it or at the config's own length (its last
    phase); such an entry whose ``T_max`` spans it from ``begin`` to ``end`` (a cosine to the
    end) gets the new span.

    Raises:
        ValueError: the loop counts the other unit, the length is < 1, or a phase of the
            schedule would begin at or after the new end (the message says the shortest length
            the phases before it, e.g. a warm-up, leave room for).
    """
    if (iters is None) == (epochs is None):
        raise ValueError('give iters or epochs')
    unit, length = ('iters', iters) if iters is not None else ('epochs', epochs)
    if length < 1:
        raise ValueError(f'{unit} must be >= 1, got {length}')
    key = f'max_{unit}'
    if key not in cfg.train_cfg:
        other = 'max_epochs' if unit == 'iters' else 'max_iters'
        raise ValueError(f'--{unit} needs a train_cfg with {key}; this config has {other}: '
                         f'shorten it with --{"epochs" if unit == "iters" else "iters"}')
    old = cfg.train_cfg[key]
    options = [f'train_cfg.{key}={length}']
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
        prefix = ['param_scheduler']
    else:
        prefix = [f'param_scheduler.{i}' for i in range(len(schedulers))]
    cut = [(name, scheduler) for name, scheduler in zip(prefix, schedulers)
           if scheduler.get('end') is not None
           and (scheduler['end'] == old or scheduler['end'] > length)]
    late = [(name, s) for name, s in cut if s.get('begin', 0) >= length]
    if late:
        name, scheduler = late[0]
        begin, word = scheduler.get('begin', 0), unit[:-1].replace('iter', 'iteration')
        before = [f'{n} ({s.get("type")}, {word}s {s.get("begin", 0)}-{s.get("end")})'
                  for n, s in zip(prefix, schedulers) if s.get('begin', 0) < begin]
        raise ValueError(
            f'--{unit} {length} is too short for this schedule: {name} '
            f'({scheduler.get("type")}) begins at {word} {begin}, after '
            f'{", ".join(before) or "nothing"} (the warm-up), so it would never run; give '
            f'--{unit} {max(s.get("begin", 0) for _, s in late) + 1} or more')
    for name, scheduler in cut:
        end, begin = scheduler['end'], scheduler.get('begin', 0)
        options.append(f'{name}.end={length}')
        if scheduler.get('T_max') == end - begin:
            options.append(f'{name}.T_max={length - begin}')
    return options


# ---------------------------------------------------------------------------------------------
# Running


#: ``Config.fromfile`` is not thread-safe (its ``mmseg::`` base lookup goes through
#: ``pkg_resources``): the runs of :func:`run_comparison` read their configs one at a time.
_CONFIG_LOCK = threading.Lock()


def parse_cfg_options(options: Sequence[str]) -> Optional[dict]:
    """``k=v`` strings as ``--cfg-options`` parses them (MMEngine's ``DictAction``); ``None``
    for none."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *options]).cfg_options if options else None


def merged_config(config: str, options: Sequence[str]) -> Config:
    """``config`` with ``options`` applied as ``tools/train.py --cfg-options`` applies them."""
    with _CONFIG_LOCK:
        cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(parse_cfg_options(options))
    return cfg


def selection(cfg) -> str:
    """Which checkpoint a run of ``cfg`` is tested with: ``'val'`` (the best-val checkpoint)
    when the config validates during training and keeps its best checkpoint
    (``default_hooks.checkpoint.save_best``, as the classification configs do), else
    ``'final'`` (the last checkpoint)."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    validates = cfg.get('val_dataloader') is not None and cfg.get('val_cfg') is not None \
        and cfg.get('val_evaluator') is not None
    return 'val' if hook.get('save_best') and validates else 'final'


def run_options(config: str, overrides: Sequence[str], seed: int, iters: Optional[int] = None,
                epochs: Optional[int] = None) -> Tuple[List[str], Config]:
    """The ``--cfg-options`` of one run and the merged config they give.

    ``overrides`` + ``randomness.seed`` (and ``model.guidance.mapping.seed`` when the model has
    DA-VPT guidance) + the schedule of ``iters`` or ``epochs`` (:func:`schedule_options`); when
    the run is tested with its final checkpoint (:func:`selection`), no validation during
    training.
    """
    options = list(overrides) + [f'randomness.seed={seed}']
    cfg = merged_config(config, options)
    if cfg.model.get('guidance') is not None:
        options.append(f'model.guidance.mapping.seed={seed}')
    if iters is not None or epochs is not None:
        options += schedule_options(cfg, iters, epochs=epochs)
    if selection(cfg) == 'final':
        options += ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']
    return options, merged_config(config, options)


def config_digest(cfg: Config) -> str:
    """SHA-1 of the merged config's text: a run's result is only reused for the same config."""
    return hashlib.sha1(cfg.pretty_text.encode()).hexdigest()


def run_command(cmd: List[str], log_path: str, threads: Optional[int], cwd: str) -> float:
    """Run ``cmd`` in ``cwd`` with ``threads`` OpenMP/MKL threads (``None``: the defaults) and
    its output in ``log_path``; returns the wall time, raises with the log's tail on failure."""
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    with open(log_path, 'w') as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    if proc.returncode != 0:
        with open(log_path) as log:
            tail = ''.join(log.readlines()[-30:])
        raise RuntimeError(f'{" ".join(cmd)} failed ({proc.returncode}); see {log_path}:\n{tail}')
    return time.perf_counter() - start


#: The module of a run's process (:func:`run_process`).
RUN_MODULE = 'mmdavpt_lab.run'

#: What the fork server of :func:`run_process` imports once for all runs: the run module (the
#: package, torch, MMEngine) and what the MMPretrain and MMSeg registries import when a runner is
#: built in their scope.
RUN_PRELOAD = (RUN_MODULE, 'mmpretrain.datasets', 'mmpretrain.engine',
               'mmpretrain.evaluation', 'mmpretrain.models', 'mmpretrain.visualization',
               'mmseg.datasets', 'mmseg.engine', 'mmseg.evaluation', 'mmseg.models',
               'mmseg.visualization')


def run_process(argv: List[str], log_path: str, threads: Optional[int], cwd: str) -> float:
    """``python -m mmdavpt_lab.run ARGV`` in ``cwd`` with ``threads`` intra-op threads
    (``None``: the default) and its output appended to ``log_path``, as a new process forked from
    a server that imported :data:`RUN_PRELOAD` once (multiprocessing's ``forkserver``): each run
    still gets a process of its own, without the ~7 s of imports that a fresh Python pays.
    Returns the wall time; raises with the log's tail on failure."""
    ctx = multiprocessing.get_context('forkserver')
    ctx.set_forkserver_preload(list(RUN_PRELOAD))
    start = time.perf_counter()
    proc = ctx.Process(target=main_in_child,
                       args=(RUN_MODULE, argv, log_path, threads, cwd))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        if not osp.isfile(log_path):  # e.g. a script without the ``__main__`` guard that
            # multiprocessing's forkserver needs: its error went to this process's stderr
            raise RuntimeError(f'mmdavpt_lab.run {" ".join(argv)} failed ({proc.exitcode}) '
                               f'before it wrote {log_path}: see the error printed above')
        with open(log_path) as log:
            tail = ''.join(log.readlines()[-30:])
        raise RuntimeError(f'mmdavpt_lab.run {" ".join(argv)} failed ({proc.exitcode}); '
                           f'see {log_path}:\n{tail}')
    return time.perf_counter() - start


def final_checkpoint(work_dir: str, cfg: Config) -> str:
    """The checkpoint the training of ``cfg`` in ``work_dir`` ends with."""
    loop = cfg.train_cfg
    if 'max_iters' in loop:
        return osp.join(work_dir, f'iter_{loop.max_iters}.pth')
    return osp.join(work_dir, f'epoch_{loop.max_epochs}.pth')


def best_checkpoint(work_dir: str) -> Optional[str]:
    """The best-val checkpoint MMEngine's ``CheckpointHook(save_best=...)`` left in
    ``work_dir`` (it keeps one), or ``None``.

    Raises:
        RuntimeError: more than one ``best_*.pth``.
    """
    found = sorted(glob.glob(osp.join(work_dir, 'best_*.pth')))
    if len(found) > 1:
        raise RuntimeError(f'{work_dir}: expected one best_*.pth, found {found}')
    return found[0] if found else None


def run_identity(cfg: Config, amp: bool = False) -> Dict[str, object]:
    """What makes two trainings the same run: the merged config (:func:`config_digest`; it holds
    the seed and the schedule) and mixed precision (``--amp`` is not in the config: the training
    switches the optimizer wrapper when it starts)."""
    return dict(config_digest=config_digest(cfg), amp=bool(amp))


def write_trained(run_dir: str, cfg: Config, amp: bool, train_seconds: float, config: str,
                  options: Sequence[str]) -> None:
    """Write :data:`TRAINED_FILE`: the training of ``cfg`` (``config`` with ``options``, with
    ``amp``) ended in ``run_dir`` after ``train_seconds``."""
    with open(osp.join(run_dir, TRAINED_FILE), 'w') as f:
        json.dump(dict(run_identity(cfg, amp), train_seconds=train_seconds, config=config,
                       cfg_options=list(options)), f)


def trained_checkpoint(run_dir: str, cfg: Config, amp: bool = False) -> Optional[str]:
    """The checkpoint a finished training of ``cfg`` (with ``amp``) in ``run_dir`` is tested with
    (:func:`selection`), or ``None`` when no training finished there: a training finished once
    its :data:`TRAINED_FILE` is written (an interrupted run leaves a best-val checkpoint behind
    too), and it must be this run's (:func:`run_identity`).

    Raises:
        ValueError: the training that finished in ``run_dir`` is of another config or precision,
            or did not record which; its checkpoints are not this run's.
    """
    path = osp.join(run_dir, TRAINED_FILE)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        try:
            done = json.load(f)
        except json.JSONDecodeError:
            done = None
    want = run_identity(cfg, amp)
    if not isinstance(done, dict) or any(done.get(k) != v for k, v in want.items()):
        what = 'a config it did not record (an older mmdavpt wrote it)' \
            if not isinstance(done, dict) or 'config_digest' not in done else \
            f'{done.get("config")} with {done.get("cfg_options")}' + \
            (' and --amp' if done.get('amp') else ' without --amp')
        raise ValueError(
            f'{run_dir} holds a finished training of {what} ({path}), not of this run '
            f'({cfg.filename} with its options{" and --amp" if amp else " without --amp"}): '
            f'its checkpoints are not this run\'s. Use another --work-dir, or delete {run_dir} '
            f'to train this run there.')
    if selection(cfg) == 'val':
        return best_checkpoint(run_dir)
    final = final_checkpoint(run_dir, cfg)
    return final if osp.isfile(final) else None


def check_result(result: dict, result_path: str, config: str, options: Sequence[str],
                 digest: str, amp: bool, modes: Sequence[str]) -> None:
    """Refuse to read a finished run's :data:`RESULT_FILE` back for another run: another
    merged config (the same merged config is the same run, however its options are spelled),
    another precision, or other test modes (``--no-tta``).

    Raises:
        ValueError: naming what differs and the way out.
    """
    same_options = (result['config'], result['cfg_options']) == (config, list(options))
    stored = result.get('config_digest')
    if not same_options and stored != digest:
        raise ValueError(f'{result_path} is a run of {result["config"]} with '
                         f'{result["cfg_options"]}, not of {config} with {list(options)}: use '
                         'another work dir')
    if stored is not None and stored != digest:
        raise ValueError(f'{result_path} is a run of another content of {config} (the '
                         'config file changed since): use another work dir')
    if 'amp' not in result:
        raise ValueError(f'{result_path} does not record whether its run used --amp (an older '
                         'mmdavpt wrote it): use another work dir')
    if result['amp'] != amp:
        raise ValueError(f'{result_path} is a run {"with" if result["amp"] else "without"} '
                         f'--amp, not {"with" if amp else "without"}: use another work dir')
    tested = [m for m in ('ss', 'tta') if m in result['metrics']]
    if tested != list(modes):
        raise ValueError(f'{result_path} was tested in the modes {tested}, this run asks for '
                         f'{list(modes)} (--no-tta): use another work dir, or delete that file '
                         'to test the finished training again')


def attention_shares(shares_json: str) -> Optional[Dict[str, float]]:
    """The CLS -> prompt attention shares of :func:`mmdavpt_lab.attention.write_shares` at
    the last layer measured: ``dict(layer, positive, other)``, ``positive`` the mean share of the
    CLS token's attention on its class's prompt, ``other`` the mean share per other prompt of
    that layer; ``None`` when the layer has no positive prompt (no mapping)."""
    with open(shares_json) as f:
        means = next(iter(json.load(f).values()))
    layer = max(means, key=int)
    m = means[layer]
    if m.get('positive') is None or m['num_prompts'] < 2:
        return None
    return dict(layer=int(layer), positive=float(m['positive']),
                other=float(m['others']) / (m['num_prompts'] - 1))


def run_one(method: str, config: str, overrides: Sequence[str], seed: int, work_dir: str,
            root: str, iters: Optional[int] = None, epochs: Optional[int] = None,
            amp: bool = False, tta: bool = True,
            threads: Optional[int] = 1, log: Callable[[str], None] = print) -> dict:
    """Train and test one (method, seed) in ``{work_dir}/{method}/seed{seed}``, or read its
    :data:`RESULT_FILE` when it finished before; a run whose checkpoint (final, or best-val:
    :func:`selection`) exists is only tested. A guided MMPretrain model also gets its CLS ->
    prompt attention shares on the val split (:func:`attention_shares`). All of it runs in one
    process of its own (:func:`run_process`; its output in ``{run dir}/``:data:`RUN_LOG`).

    Args:
        method: its name.
        config: config path (relative to ``root`` or absolute).
        overrides: ``--cfg-options`` of the method.
        seed: ``randomness.seed`` (and the mapping seed).
        work_dir: the comparison's work dir.
        root: the repository root (the run's process runs there).
        iters: shorten an iteration-based schedule to this many iterations.
        epochs: shorten an epoch-based schedule to this many epochs.
        amp: ``--amp`` training and ``test_cfg.fp16=True`` testing.
        tta: MMSeg: test once more with ``--tta``.
        threads: intra-op threads of the run's process (``None``: torch's default).

    Returns:
        The run result: ``method``, ``seed``, ``config``, ``cfg_options``, ``config_digest``,
        ``amp``, ``selection``,
        ``checkpoint``, ``metric``, ``metrics`` ({``'ss'``/``'tta'``: test value, ``'val'``: the
        best val value of a val-selected run}), ``attention`` (:func:`attention_shares` or
        ``None``), ``train_seconds``, ``seconds_per_step``, ``tunable_params``.
    """
    run_dir = osp.join(work_dir, method, f'seed{seed}')
    result_path = osp.join(run_dir, RESULT_FILE)
    options, cfg = run_options(osp.join(root, config), overrides, seed, iters, epochs)
    digest = config_digest(cfg)
    scope = cfg.get('default_scope', 'mmpretrain')
    if scope not in METRICS:
        raise ValueError(f'{config}: default_scope {scope!r} is not one of {sorted(METRICS)}')
    modes = ['ss'] + (['tta'] if scope == 'mmseg' and tta else [])
    if osp.isfile(osp.join(root, result_path)):
        with open(osp.join(root, result_path)) as f:
            result = json.load(f)
        check_result(result, result_path, config, options, digest, amp, modes)
        log(f'[compare] {method} seed {seed}: done before ({result_path})')
        return result
    os.makedirs(osp.join(root, run_dir), exist_ok=True)
    select = selection(cfg)
    trained = trained_checkpoint(osp.join(root, run_dir), cfg, amp) is not None
    attend = scope == 'mmpretrain' and cfg.model.get('guidance') is not None and select == 'val'
    layers = [str(i) for i in cfg.model.backbone.get('guided_layers', (-1, ))]
    log(f'[compare] {method} seed {seed}: '
        f'{"testing" if trained else "training"} in {run_dir}')
    run_process([config, '--work-dir', run_dir, *([] if trained else ['--train']),
                 *(['--amp'] if amp else []), '--test', *modes,
                 *(['--attention-layers', *layers] if attend else []), '--cfg-options', *options],
                osp.join(root, run_dir, RUN_LOG), threads, root)
    train_seconds = None
    if not trained:
        with open(osp.join(root, run_dir, TRAINED_FILE)) as f:
            train_seconds = json.load(f)['train_seconds']
    ckpt = trained_checkpoint(osp.join(root, run_dir), cfg, amp)
    metrics = {mode: float(read_test_metrics(osp.join(root, run_dir, f'test_{mode}'))
                           [METRICS[scope]]) for mode in modes}
    best = workdir.best_val(workdir.train_scalars(osp.join(root, run_dir)),
                            metric=METRICS[scope])[0] if select == 'val' else None
    if best is not None:
        metrics['val'] = best
    attention = attention_shares(osp.join(root, run_dir, ATTENTION_DIR, SHARES_JSON)) \
        if attend else None
    result = dict(method=method, seed=seed, config=config, cfg_options=options,
                  config_digest=digest, amp=bool(amp), selection=select, checkpoint=ckpt,
                  metric=METRICS[scope], metrics=metrics, attention=attention,
                  train_seconds=train_seconds,
                  seconds_per_step=seconds_per_step(osp.join(root, run_dir)),
                  tunable_params=count_config_tunable(
                      cfg.model, scope=cfg.get('default_scope', 'mmpretrain')))
    with open(osp.join(root, result_path), 'w') as f:
        json.dump(result, f, indent=2)
    labels = metric_labels(METRICS[scope])
    log(f'[compare] {method} seed {seed}: ' + ', '.join(
        f'{labels.get(k, k)} {v:.2f}' for k, v in metrics.items()))
    return result


def check_comparison(methods: Dict[str, Tuple[str, Sequence[str]]], seeds: Sequence[int],
                     baseline: Optional[str] = None, iters: Optional[int] = None,
                     epochs: Optional[int] = None, root: str = '') -> None:
    """What :func:`run_comparison` refuses before any run starts: a repeated seed (two runs of
    one run directory at once), a baseline that is not a method, and a method whose config
    (relative to ``root`` or absolute) is missing or cannot be shortened to ``iters`` /
    ``epochs`` (:func:`schedule_options`).

    Raises:
        ValueError: naming the seed, the baseline or the method.
    """
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ValueError(f'seeds {list(seeds)} repeat {repeated}: each (method, seed) is one run '
                         'directory; give each seed once')
    if not seeds:
        raise ValueError('no seeds')
    if baseline is not None and baseline not in methods:
        raise ValueError(f'baseline {baseline!r} is not one of the methods {list(methods)}')
    for method, (config, overrides) in methods.items():
        try:
            run_options(osp.join(root, config), overrides, seeds[0], iters, epochs)
        except (OSError, ValueError) as e:
            raise ValueError(f'{method} ({config}): {e}') from e


def run_comparison(methods: Dict[str, Tuple[str, Sequence[str]]], seeds: Sequence[int],
                   work_dir: str, root: str, baseline: Optional[str] = None, jobs: int = 1,
                   log: Callable[[str], None] = print, **run_kwargs) -> dict:
    """Run every (method, seed) (:func:`run_one`, ``jobs`` side by side, seed by seed) and
    summarise them.

    Args:
        methods: {name: (config, overrides)}.
        seeds: the seeds.
        work_dir: where the runs and ``compare.json`` / ``compare.png`` go (relative to
            ``root`` or absolute).
        root: the repository root.
        baseline: the method the others are paired with.
        jobs: runs side by side.
        run_kwargs: ``iters``, ``epochs``, ``amp``, ``tta``, ``threads`` of :func:`run_one`.

    Returns:
        ``dict(metric, seeds, baseline, summary, runs, failed, table, plot)``:
        :func:`summarize`'s summary, the finished runs, the failed ones (method, seed, error;
        the others still run), the Markdown table and the plot's path (or why there is none);
        also written to ``{work_dir}/compare.json``. ``baseline`` is ``None`` when every run of
        the baseline failed (the table then pairs nothing).

    Raises:
        ValueError: before any run, what :func:`check_comparison` refuses.
        RuntimeError: every run failed (listing the failures).
    """
    check_comparison(methods, seeds, baseline, run_kwargs.get('iters'), run_kwargs.get('epochs'),
                     root)
    todo = [(m, c, o, s) for s in seeds for m, (c, o) in methods.items()]
    log(f'[compare] {len(methods)} methods x {len(seeds)} seeds, {jobs} side by side; '
        f'work dir {work_dir}')
    failed = []

    def one(job: tuple) -> Optional[dict]:
        try:
            return run_one(*job, work_dir, root, log=log, **run_kwargs)
        except (RuntimeError, ValueError, OSError) as e:  # the other runs go on
            log(f'[compare] {job[0]} seed {job[3]} FAILED: {e}')
            failed.append(dict(method=job[0], seed=job[3], error=str(e)))
            return None

    with ThreadPoolExecutor(jobs) as pool:
        runs = [r for r in pool.map(one, todo) if r is not None]
    if not runs:
        raise RuntimeError(f'every run failed: {failed}')
    keys = list(dict.fromkeys(k for r in runs for k in r['metrics']))
    if baseline is not None and not any(r['method'] == baseline for r in runs):
        log(f'[compare] every run of the baseline {baseline} failed: nothing is paired')
        baseline = None
    summary = summarize(runs, keys, baseline)
    labels = metric_labels(runs[0]['metric'])
    table = format_summary(summary, keys, labels, baseline)
    plot_path = osp.join(root, work_dir, 'compare.png')
    why_not = plot_runs(runs, keys, plot_path,
                        {k: f'{runs[0]["metric"]} {labels.get(k, k)}' for k in keys})
    out = dict(metric=runs[0]['metric'], seeds=list(seeds), baseline=baseline,
               summary=summary, runs=runs, failed=failed, table=table,
               plot=why_not or plot_path)
    with open(osp.join(root, work_dir, 'compare.json'), 'w') as f:
        json.dump(out, f, indent=2)
    return out


def verdict(summary: Dict[str, dict], method: str, baseline: str, key: str = 'ss',
            what: str = 'test accuracy', confidence: float = 0.95) -> str:
    """One sentence, from the numbers only, on whether ``method`` beat ``baseline`` in
    :func:`summarize`'s output: the two means over the seeds both have, the paired difference and
    its interval over the same seeds, and what the interval allows one to say (above 0: helped;
    below 0: hurt; containing 0: these seeds cannot tell). Seeds that only one of the two has
    are named as left out.

    Raises:
        ValueError: a method has no run, or no seed in common with the other.
    """
    for name in (method, baseline):
        if key not in summary.get(name, {}):
            raise ValueError(f'{name} has no finished run with {key!r}: no verdict on {method} '
                             f'vs {baseline}')
    diff = summary[method][key].get('diff')
    if diff is None:
        raise ValueError(f'{method} has no paired difference to {baseline} for {key!r}')
    level = f'{confidence:.0%}'
    seeds = diff['n']
    left = [f'{name} seed{"s" * (len(extra) > 1)} {", ".join(str(s) for s in extra)}'
            for name in (method, baseline)
            for extra in [[s for s in summary[name]['seeds'] if s not in diff['seeds']]]
            if extra]
    which = f'mean of {seeds} seeds' if not left else \
        f'mean of the {seeds} seeds both have, {", ".join(str(s) for s in diff["seeds"])}; ' \
        f'left out: {"; ".join(left)}'
    numbers = (f'{method} {diff["method_mean"]:.2f} vs {baseline} {diff["baseline_mean"]:.2f} '
               f'{what} ({which}); paired difference {diff["mean"]:+.2f}')
    if seeds < 2 or math.isnan(diff['low']):
        return f'{numbers}: one seed, no interval, no conclusion.'
    numbers += f', {level} t interval [{diff["low"]:+.2f}, {diff["high"]:+.2f}]'
    if diff['low'] > 0:
        return f'{numbers}: {method} helped here.'
    if diff['high'] < 0:
        return f'{numbers}: {method} did worse here.'
    return (f'{numbers}: the interval contains 0, so these seeds do not show that {method} '
            f'helped or hurt here.')


def pool_comparisons(paths: Sequence[str], baseline: Optional[str] = None,
                     confidence: float = 0.95) -> dict:
    """Pool the runs of several ``compare.json`` files (e.g. one per task) into one summary:
    each (file, seed) is one pair, so the paired difference is taken over tasks and seeds.
    Methods missing from a file just have fewer pairs there.

    Returns:
        ``dict(metric, sources, summary, table)`` as :func:`run_comparison`'s, the seeds of the
        summary numbered ``1000 * file index + seed``.

    Raises:
        ValueError: a file given twice (compared by real path), a file that is not a
            ``compare.json`` (a run's :data:`RESULT_FILE`, say), a run held by two files (the
            same ``config_digest``, which holds the seed; for runs without one, the same method,
            config, options and seed), or files of different metrics: a run counted twice would
            narrow the interval.
    """
    given: Dict[str, str] = {}
    for path in paths:
        real = osp.realpath(path)
        if real in given:
            raise ValueError(f'{path} is given twice (as {given[real]}): pool each comparison '
                             'once')
        given[real] = path
    runs, metric, seen = [], None, {}
    for i, path in enumerate(paths):
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f'{path} is not a compare.json of '
                                 f'tools/analysis/compare_methods.py (not JSON: {e})') from e
        if not isinstance(data, dict) or not {'metric', 'runs'} <= set(data):
            one_run = isinstance(data, dict) and {'method', 'seed', 'metrics'} <= set(data)
            raise ValueError(
                f'{path} is not a compare.json of tools/analysis/compare_methods.py (no "runs")'
                + (f": it is one run's {RESULT_FILE}; pool the compare.json in its "
                   "comparison's work dir" if one_run else ''))
        if metric is not None and data['metric'] != metric:
            raise ValueError(f'{path} compares {data["metric"]}, the others {metric}')
        metric = data['metric']
        for run in data['runs']:
            key = run.get('config_digest') or (
                json.dumps([run['method'], run['config'], run.get('cfg_options'), run['seed']])
                if run.get('config') else None)
            if key is not None and key in seen:
                raise ValueError(f'{path} and {seen[key]} both hold the run {run["method"]} seed '
                                 f'{run["seed"]} (the same config and seed): pooled twice it '
                                 'would count twice and narrow the interval; pool each '
                                 'comparison once')
            if key is not None:
                seen[key] = path
            runs.append(dict(run, seed=1000 * i + int(run['seed'])))
    if not runs:
        raise ValueError(f'no runs in {list(paths)}')
    keys = list(dict.fromkeys(k for r in runs for k in r['metrics']))
    summary = summarize(runs, keys, baseline, confidence)
    return dict(metric=metric, sources=list(paths), summary=summary,
                table=format_summary(summary, keys, metric_labels(metric), baseline, confidence))
