"""Refuse a checkpoint that does not belong to the run: another config on resume, another model,
another task's classes. (A training that would overwrite the checkpoints of a run of other
settings: :func:`mmdavpt.utils.config_diff.check_work_dir_settings`.)"""
from typing import Dict, List, Sequence

from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import BaseLoop, find_latest_checkpoint

from mmdavpt.engine.head_classes import check_head_classes
from mmdavpt.models.backbones import davpt_backbones
from mmdavpt.models.backbones.tuned_only import META_FLAG, fingerprint_keys, frozen_backbone_keys
from mmdavpt.registry import register_hook
from mmdavpt.utils.ckpt_convert import compare_state_dicts
from mmdavpt.utils.config_diff import config_differences, parse_pretty_text, short

#: Config sections that must be the same when a run is resumed: what is trained, on what data.
DEFAULT_KEYS = ('model', 'train_dataloader.dataset', 'train_dataloader.batch_size')
#: Config sections whose values a resumed run takes from the checkpoint, not from the config:
#: MMEngine restores the optimizer's parameter groups (lr, momentum, weight decay, ... as set by
#: ``optimizer`` and ``paramwise_cfg``) and every parameter scheduler's state.
RESTORED_KEYS = ('optim_wrapper.optimizer', 'optim_wrapper.paramwise_cfg', 'param_scheduler')
#: Shown in the messages: how to override from the command line.
OVERRIDE = '--allow-config-change (ConfigGuardHook(allow_config_change=True))'


def _param_group_values(state: object, name: str) -> List[object]:
    """``name`` of every parameter group in an optimizer (wrapper) state dict, also nested
    (``OptimWrapperDict``: one state per optimizer)."""
    if not isinstance(state, dict):
        return []
    if isinstance(state.get('param_groups'), list):
        return [g[name] for g in state['param_groups'] if name in g]
    return [v for sub in state.values() for v in _param_group_values(sub, name)]


@register_hook
class ConfigGuardHook(Hook):
    """Refuse to resume from, or test, a checkpoint that does not belong to the run.

    - On ``resume`` (``tools/train.py --resume``), the config saved in the checkpoint's meta
      (MMEngine writes ``meta['cfg']``) is compared with the current one on ``keys``: the model
      and the training data by default. Continuing a DA-VPT run with, e.g., another number of
      prompts or another dataset would load mismatched prompts, mapping and optimiser state, so
      the differing keys are named and the run stops. Extending the schedule (``max_epochs``),
      logging, validation and paths outside ``keys`` may change freely. Changed optimizer and
      scheduler settings (:data:`RESTORED_KEYS`, e.g. the learning rate) are not refused but do
      not take effect, as MMEngine restores them from the checkpoint: a WARNING names them,
      old -> new, and the learning rates actually in effect.
    - On resume, and when a checkpoint is loaded for testing or validation (``tools/test.py``),
      its state dict must match the model: every key present with the same shape, except the
      frozen backbone weights of a tuned-only checkpoint (``TunedOnlyCheckpointHook``), which come
      from the backbone's ``init_cfg``. MMEngine itself only warns, and tests a half-loaded model.
      A warm start (``load_from`` without ``resume``, in training) is not checked: loading part of
      a checkpoint (another head, say) is what it is for.
    - When a checkpoint is loaded for testing or validation, the classes it was trained on
      (MMEngine saves the training dataset's ``metainfo`` as ``meta['dataset_meta']``) must be
      the classes of the evaluated dataset, in the same order: a checkpoint of another task
      scores its predictions against other labels. Not checked when either side names no
      classes.
    - Before training, the heads' numbers of classes must match the training data's
      (:func:`~mmdavpt.engine.head_classes.check_head_classes`): fewer is an error, more a
      warning.

    Args:
        keys: dotted config keys compared on resume.
        ignore_keys: ``fnmatch`` patterns of dotted leaf keys not compared, e.g.
            ``('*.data_root', 'model.backbone.init_cfg.checkpoint')`` when a run moves machines.
        allow_config_change: warn instead of raising on config differences (on resume) and on
            other classes (when testing).
    """

    priority = 'VERY_HIGH'  # before anything else reads the checkpoint

    def __init__(self, keys: Sequence[str] = DEFAULT_KEYS, ignore_keys: Sequence[str] = (),
                 allow_config_change: bool = False) -> None:
        self.keys = tuple(keys)
        self.ignore_keys = tuple(ignore_keys)
        self.allow_config_change = allow_config_change

    def before_train(self, runner) -> None:
        check_head_classes(runner.model, runner.train_dataloader.dataset, runner.logger)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # ``runner._resume`` and the loop attributes are set by Runner.__init__ / train() / test()
        # before load_or_resume() calls this hook; the public properties would build the loops.
        resuming = bool(runner._resume)
        if resuming:
            self._check_config(runner, checkpoint)
        if resuming or not isinstance(runner._train_loop, BaseLoop):
            self._check_state_dict(runner, checkpoint)
        if not isinstance(runner._train_loop, BaseLoop):
            self._check_classes(runner, checkpoint)

    @staticmethod
    def _source(runner) -> str:
        return runner._load_from or find_latest_checkpoint(runner.work_dir) or runner.work_dir

    def _check_config(self, runner, checkpoint: dict) -> None:
        saved_text = checkpoint.get('meta', {}).get('cfg')
        current_text = runner.cfg.pretty_text
        if not saved_text or not saved_text.strip() or not current_text.strip():
            runner.logger.warning('ConfigGuardHook: the checkpoint or this run has no config '
                                  '(a Runner built without cfg): the configs are not compared')
            return
        try:
            saved = parse_pretty_text(saved_text)
        except SyntaxError as e:
            runner.logger.warning(f'ConfigGuardHook: the config saved in the checkpoint cannot '
                                  f'be read ({e}): the configs are not compared')
            return
        current = parse_pretty_text(current_text)
        self._warn_restored_settings(runner, saved, current, checkpoint)
        diffs = config_differences(saved, current, self.keys, self.ignore_keys)
        if not diffs:
            return
        shown = '; '.join(f'{k}: {short(a)} -> {short(b)}' for k, a, b in diffs[:12])
        more = f' (and {len(diffs) - 12} more)' if len(diffs) > 12 else ''
        msg = (f'--resume: {self._source(runner)} was saved by a run of a different config; '
               f'{len(diffs)} key(s) of {list(self.keys)} differ (checkpoint -> now): '
               f'{shown}{more}.')
        if self.allow_config_change:
            runner.logger.warning(msg + ' Resuming anyway (allow_config_change=True).')
            return
        raise ValueError(msg + f' Resume with the config of that run, start a new work_dir, or '
                         f'pass {OVERRIDE} to resume anyway.')

    def _warn_restored_settings(self, runner, saved: Dict[str, object],
                                current: Dict[str, object], checkpoint: dict) -> None:
        """Warn that changed optimizer / scheduler settings do not take effect on resume."""
        diffs = config_differences(saved, current, RESTORED_KEYS, self.ignore_keys)
        if not diffs:
            return
        shown = '; '.join(f'{k}: {short(a)} -> {short(b)}' for k, a, b in diffs[:12])
        more = f' (and {len(diffs) - 12} more)' if len(diffs) > 12 else ''
        lrs = sorted(set(_param_group_values(checkpoint.get('optimizer', {}), 'lr')))
        runner.logger.warning(
            f'--resume: {len(diffs)} optimizer/schedule setting(s) differ from the run that saved '
            f'{self._source(runner)} (checkpoint -> now): {shown}{more}. MMEngine restores the '
            f'optimizer state and the parameter schedulers from the checkpoint, so the '
            f"checkpoint's values stay in effect, not the new ones: learning rate(s) of the "
            f"checkpoint's parameter groups {lrs}. To train with the new settings, start a new "
            f'work_dir with load_from=CHECKPOINT (weights only) instead of --resume.')

    def _check_classes(self, runner, checkpoint: dict) -> None:
        """The checkpoint's training classes must be those of the dataset it is evaluated on."""
        saved = (checkpoint.get('meta', {}).get('dataset_meta') or {}).get('classes')
        loops = [loop for loop in (runner._test_loop, runner._val_loop)
                 if isinstance(loop, BaseLoop)]
        if saved is None or not loops:
            return
        dataset = loops[0].dataloader.dataset
        current = (getattr(dataset, 'metainfo', None) or {}).get('classes')
        if current is None:
            return
        saved, current = tuple(str(c) for c in saved), tuple(str(c) for c in current)
        if saved == current:
            return
        split = 'test' if loops[0] is runner._test_loop else 'val'
        msg = (f'{self._source(runner)} was trained on {len(saved)} classes {short(saved)} '
               f"(its meta['dataset_meta']), but the {split} data of this config has "
               f'{len(current)} classes {short(current)}: its predictions would be scored '
               f'against the labels of another task.')
        if self.allow_config_change:
            runner.logger.warning(msg + ' Evaluating anyway (allow_config_change=True).')
            return
        raise ValueError(msg + ' Evaluate it with the config of the data it was trained on, or '
                         f'pass {OVERRIDE} if these are the same classes under other names.')

    def _check_state_dict(self, runner, checkpoint: dict) -> None:
        model = runner.model
        while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
            model = model.module
        state = checkpoint.get('state_dict', checkpoint)
        state = {k[len('module.'):] if k.startswith('module.') else k: v
                 for k, v in state.items()}
        own = model.state_dict()
        tuned_only = checkpoint.get('meta', {}).get(META_FLAG)
        backbones = davpt_backbones(model)
        allowed_missing = frozen_backbone_keys(backbones) if tuned_only else set()
        allowed_missing |= {k for k in own if k.endswith('num_batches_tracked')}
        mismatch = compare_state_dicts(
            own, state, allowed_missing=allowed_missing,
            allowed_extra=fingerprint_keys(backbones) if tuned_only else ())
        if not mismatch:
            return
        raise KeyError(f'{self._source(runner)} does not match the model '
                       f'{type(model).__name__} of this config: ' + mismatch.describe() +
                       '. Use the config the checkpoint was trained with.')

