"""Save the random number generators in checkpoints, so that ``--resume`` continues exactly."""
import random
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import IterBasedTrainLoop

from mmdavpt.registry import register_hook

#: Key of the RNG states in a checkpoint.
CHECKPOINT_KEY = 'rng_state'


def get_rng_state() -> Dict[str, object]:
    """This process's Python, NumPy, torch CPU and current CUDA device generator states.

    Only types that ``torch.load(weights_only=True)`` reads are used (tensors, tuples, ints).
    """
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=(np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos),
               int(np_has_gauss), float(np_gauss)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Dict[str, object]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    random.setstate(state['python'])
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state['numpy']
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss,
                         np_gauss))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


@register_hook
class RNGStateHook(Hook):
    """Keep the random draws of a resumed run the same as those of an uninterrupted one.

    MMEngine's checkpoints hold the model, the optimiser, the schedulers and the message hub, but
    not the random number generators: a resumed run reseeds them with the config's seed, so prompt
    dropout and main-process augmentations draw differently after ``--resume`` than in the
    uninterrupted run. (The data order does not need this: ``DefaultSampler`` shuffles with
    ``seed + epoch``.) This hook:

    - saves the Python, NumPy, torch and CUDA generator states of every rank in each checkpoint
      (``checkpoint['rng_state'] = dict(world_size=..., states=[one per rank])``), as they are at
      the end of the last training step;
    - on ``resume``, restores them when training continues: before the dataloader of the first
      resumed epoch is created (epoch-based loops), or before the first resumed iteration
      (iteration-based loops, after MMEngine has skipped the data already trained on);
    - restores the generators after each validation, so validating (or not, or how often) does not
      change the training run.

    What it cannot restore: generators inside dataloader worker processes. MMEngine seeds each
    worker with ``seed + worker id + rank * num_workers`` when it starts, so with
    ``persistent_workers=False`` (workers restart every epoch) epoch-based runs resume exactly;
    with persistent workers (or an ``InfiniteSampler``, whose workers never restart) the
    augmentations of a resumed run differ. In an iteration-based loop with a ``DefaultSampler``,
    a checkpoint saved at the end of a pass over the data is followed, in the uninterrupted run,
    by the loader's re-creation, which draws from torch's generator before the next iteration;
    the resumed run misses that draw (MMSeg's ``InfiniteSampler`` is never re-created). A
    checkpoint saved with a different number of processes, or without this hook, resumes with
    freshly seeded generators and a warning.
    """

    priority = 'VERY_HIGH'  # gather before CheckpointHook saves; restore before others draw

    def __init__(self) -> None:
        self._gathered: Optional[List[Dict[str, object]]] = None
        self._in_val: Optional[Dict[str, object]] = None
        self._to_restore: Optional[Dict[str, object]] = None

    # ---- saving ------------------------------------------------------------------------------
    def _gather(self) -> None:
        """All ranks' states, for rank 0 to save (``Runner.save_checkpoint`` runs on it only).

        Gathered where a checkpoint may follow: after each epoch, after the iterations at which a
        ``CheckpointHook`` saves, and before each validation (best-val checkpoints)."""
        if get_dist_info()[1] > 1:
            self._gathered = all_gather_object(get_rng_state())

    def after_train_epoch(self, runner) -> None:
        self._gather()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if get_dist_info()[1] > 1 and self._checkpoint_due(runner):
            self._gather()

    def _checkpoint_due(self, runner) -> bool:
        """Whether a CheckpointHook saves after this iteration (same rule as the hook's)."""
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and not hook.by_epoch and (
                    hook.every_n_train_iters(runner, hook.interval, hook.save_begin)
                    or (hook.save_last and hook.is_last_train_iter(runner))):
                return True
        return False

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        world_size = get_dist_info()[1]
        if world_size > 1:
            if self._gathered is None:
                runner.logger.warning('RNGStateHook: no RNG states gathered for this checkpoint '
                                      '(saved outside a training epoch or checkpoint interval); '
                                      'it resumes with freshly seeded generators')
                return
            states, self._gathered = self._gathered, None  # never reused by a later save
        else:
            states = [self._in_val if self._in_val is not None else get_rng_state()]
        checkpoint[CHECKPOINT_KEY] = dict(world_size=world_size, states=states)

    # ---- validation does not consume training randomness ---------------------------------------
    def before_val(self, runner) -> None:
        self._in_val = get_rng_state()
        self._gather()  # for a best-val checkpoint saved during this validation

    def after_val(self, runner) -> None:
        if self._in_val is not None:
            set_rng_state(self._in_val)
            self._in_val = None

    # ---- resuming ----------------------------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not runner._resume:  # load_from without resume: a warm start, not a continuation
            return
        saved = checkpoint.get(CHECKPOINT_KEY)
        rank, world_size = get_dist_info()
        if saved is None:
            runner.logger.warning('RNGStateHook: the checkpoint holds no RNG state (saved without '
                                  'this hook): the resumed run draws different random numbers '
                                  'than an uninterrupted one would')
        elif saved['world_size'] != world_size:
            runner.logger.warning(f'RNGStateHook: the checkpoint was saved by '
                                  f'{saved["world_size"]} processes, this run has {world_size}: '
                                  'the RNG states are not restored')
        else:
            self._to_restore = saved['states'][rank]

    def _restore(self, runner) -> None:
        if self._to_restore is not None:
            set_rng_state(self._to_restore)
            self._to_restore = None
            runner.logger.info('RNGStateHook: random generator states restored from the '
                               'checkpoint')

    def before_train_epoch(self, runner) -> None:
        if not isinstance(runner.train_loop, IterBasedTrainLoop):
            self._restore(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._restore(runner)

