"""The hook that builds and updates the class -> prompt mapping (paper section 2.4), and the
remap history it writes (:func:`read_remap_history`)."""
import dataclasses
import glob
import json
import os.path as osp
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmengine.dist import get_rank, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader

from mmdavpt.models.mapping import RemapResult, SemanticMapping
from mmdavpt.registry import register_hook

#: The remap history of one run, in its log dir (``runner.log_dir``): a :class:`RemapRecord` per
#: line, as a JSON object.
REMAP_HISTORY_FILE = 'davpt_remaps.jsonl'


@dataclasses.dataclass
class RemapRecord:
    """One remap of the class -> prompt mapping (a line of :data:`REMAP_HISTORY_FILE`).

    Attributes:
        unit: ``'epoch'`` or ``'iteration'``, what ``step`` counts.
        step: epochs or iterations trained when the remap ran (0 for a fresh run's initial one).
        initial: the mapping of the frozen pre-trained backbone, before training.
        class_to_prompt: C, the prompt of every class after the remap.
        moved_fraction: share of the C classes whose prompt changed.
        kmeans_seconds: time spent clustering.
        num_seen_classes: classes with samples since the previous remap.
    """
    unit: str
    step: int
    initial: bool
    class_to_prompt: List[int]
    moved_fraction: float
    kmeans_seconds: float
    num_seen_classes: int

    @property
    def when(self) -> str:
        """``'initial'``, ``'after epoch N'`` or ``'after iteration N'``."""
        return 'initial' if self.initial else f'after {self.unit} {self.step}'


def read_remap_history(path: str) -> List[RemapRecord]:
    """The remaps that :class:`SemanticMappingHook` wrote, in the order they ran.

    Args:
        path: a :data:`REMAP_HISTORY_FILE`, a run's log dir that holds one, or a work dir: then
            the history of every run in it (``WORK_DIR/<timestamp>/``, a resumed run included),
            oldest run first. A work dir without any history gives ``[]``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line is not a remap record (names the file and line).
    """
    if osp.isfile(path):
        files = [path]
    elif osp.isdir(path):
        own = osp.join(path, REMAP_HISTORY_FILE)
        files = [own] if osp.isfile(own) else sorted(
            glob.glob(osp.join(path, '*', REMAP_HISTORY_FILE)))
    else:
        raise FileNotFoundError(f'no remap history at {path}: give a work dir, a run\'s log dir '
                                f'or a {REMAP_HISTORY_FILE}')
    fields = [f.name for f in dataclasses.fields(RemapRecord)]
    records = []
    for file in files:
        with open(file) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    records.append(RemapRecord(**{name: entry[name] for name in fields}))
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(f'{file}:{number} is not a remap record of '
                                     f'SemanticMappingHook ({type(e).__name__}: {e})') from e
    return records


@register_hook
class SemanticMappingHook(Hook):
    """Initial mapping before training, remapping after every epoch or every ``interval`` iters.

    Before training (unless a mapping was loaded or resumed), the frozen pre-trained backbone runs
    without prompts over the training data and the per-class mean features are clustered. During
    training the class statistics come from the training forward pass itself (no extra forward
    pass); they are re-clustered, warm-started from the previous centroids:

    - under an ``EpochBasedTrainLoop``, after every ``interval`` epochs;
    - under an ``IterBasedTrainLoop``, every ``interval`` iterations.

    Args:
        interval: epochs (epoch-based loops) or iterations (iteration-based loops) between remaps.
        images_per_class: cap on the samples per class of the initial pass (images for
            classification, labelled patches for segmentation); ``None`` uses all.
        by_epoch: ``None`` follows the train loop; set it to force one behaviour.

    Every remap is logged, and written as a :class:`RemapRecord` line to
    ``runner.log_dir/davpt_remaps.jsonl`` (rank 0), which :func:`read_remap_history` reads.
    """

    priority = 'NORMAL'  # before CheckpointHook, so a saved checkpoint holds the new mapping

    def __init__(self, interval: int = 1, images_per_class: Optional[int] = None,
                 by_epoch: Optional[bool] = None) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        if images_per_class is not None and images_per_class < 1:
            raise ValueError(f'images_per_class must be >= 1 or None, got {images_per_class}')
        self.interval = interval
        self.images_per_class = images_per_class
        self.by_epoch = by_epoch

    @staticmethod
    def _model(runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if getattr(model, 'guidance', None) is None:
            raise RuntimeError(f'{type(model).__name__} has no DA-VPT guidance: use '
                               'DAVPTImageClassifier / DAVPTEncoderDecoder with guidance=dict(...)'
                               ', or remove SemanticMappingHook from custom_hooks')
        return model

    def before_train(self, runner) -> None:
        if self.by_epoch is None:
            self.by_epoch = isinstance(runner.train_loop, EpochBasedTrainLoop)
        mapping: SemanticMapping = self._model(runner).guidance.mapping
        if mapping.initialized:
            runner.logger.info('DA-VPT: class->prompt mapping restored from the checkpoint')
            return
        self._initial_pass(runner)
        self._remap(runner, initial=True)

    @torch.no_grad()
    def _initial_pass(self, runner) -> None:
        model = self._model(runner)
        mapping = model.guidance.mapping
        mapping.reset_statistics()
        was_training = model.training
        model.eval()
        loader = self._one_pass_loader(runner)
        cap = self.images_per_class
        bar = ProgressBar(len(loader)) if get_rank() == 0 else None
        runner.logger.info('DA-VPT: class means of the frozen pre-trained backbone over the '
                           f'training data ({"all" if cap is None else cap} images per class)')
        for data in loader:
            # training=True pads segmentation crops of different sizes to one batch shape (and
            # masks with the ignore index); skipped when batch augmentations (mixup...) are set
            pad = getattr(model.data_preprocessor, 'batch_augments', None) is None
            data = model.data_preprocessor(data, pad)
            feats, labels = model.mapping_features(data['inputs'], data['data_samples'],
                                                   prompts=False)
            if cap is not None:  # keep the samples of classes still below the cap
                same_class_before = F.one_hot(labels, mapping.num_classes).cumsum(0)[
                    torch.arange(len(labels)), labels] - 1
                keep = mapping.class_count[labels] + same_class_before < cap
                feats, labels = feats[keep], labels[keep]
            mapping.accumulate(feats, labels)
            if bar is not None:
                bar.update()
            if cap is not None and bool((mapping.class_count >= cap).all()):
                break
        if bar is not None:
            print()
        model.train(was_training)

    @staticmethod
    def _one_pass_loader(runner) -> DataLoader:
        """One shuffled pass over the training set (sharded over the ranks).

        Built by ``Runner.build_dataloader`` from the train dataloader's config (batch size,
        workers, collate function...) and its already built dataset, with the sampler replaced
        by a ``DefaultSampler``: the train loader's own may be an ``InfiniteSampler`` (MMSeg's
        iteration-based configs), whose iteration never ends and whose single index stream the
        training loop reads.
        """
        # what the runner built its train loader from (``Runner.from_cfg`` passes
        # cfg.train_dataloader; a Runner built from arguments has nothing in runner.cfg)
        cfg = runner._train_dataloader
        if not isinstance(cfg, dict):
            raise TypeError('SemanticMappingHook builds the loader of its initial pass from the '
                            f'train_dataloader config, but the runner was given a '
                            f'{type(cfg).__name__}: pass train_dataloader as a dict')
        cfg = dict(cfg, dataset=runner.train_dataloader.dataset,
                   sampler=dict(type='DefaultSampler', shuffle=True, seed=runner.seed),
                   persistent_workers=False)  # one pass: no workers kept alive after it
        return runner.build_dataloader(cfg, seed=runner.seed)

    def _remap(self, runner, initial: bool = False) -> None:
        mapping: SemanticMapping = self._model(runner).guidance.mapping
        result: RemapResult = mapping.remap()
        # hooks run before the loop counts the epoch / iteration that just ended
        step = (runner.epoch if self.by_epoch else runner.iter) + (0 if initial else 1)
        record = RemapRecord(unit='epoch' if self.by_epoch else 'iteration', step=step,
                             initial=initial, class_to_prompt=mapping.class_to_prompt.tolist(),
                             moved_fraction=result.moved_fraction,
                             kmeans_seconds=result.kmeans_seconds,
                             num_seen_classes=result.num_seen_classes)
        runner.logger.info(
            f'DA-VPT remap ({record.when}): k-means {result.kmeans_seconds:.3f} s over '
            f'{result.num_seen_classes} classes, {result.moved_fraction:.1%} of classes moved; '
            f'class_to_prompt={json.dumps(record.class_to_prompt)}')
        if is_main_process():
            with open(osp.join(runner.log_dir, REMAP_HISTORY_FILE), 'a') as f:
                f.write(json.dumps(dataclasses.asdict(record)) + '\n')

    def after_train_epoch(self, runner) -> None:
        if self.by_epoch and self.every_n_epochs(runner, self.interval):
            self._remap(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.by_epoch and self.every_n_train_iters(runner, self.interval):
            self._remap(runner)

