"""An interrupted-and-resumed run continues exactly as the uninterrupted run of the same seed."""
import time

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmdavpt.engine.hooks.mapping_hook import read_remap_history
from mmdavpt.engine.hooks.rng_state_hook import RNGStateHook  # noqa: F401  (registers it)

from conftest import TinyClsDataset, tiny_classifier_cfg

MAX_EPOCHS = 3
CRASH_AFTER = 1  # epochs


class _Crash(Exception):
    pass


class _CrashAfterEpoch(Hook):
    """The run is killed right after epoch ``k``'s checkpoint is written (before validation)."""

    priority = 'LOWEST'

    def __init__(self, epoch):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.epoch:
            raise _Crash


class _Record(Hook):
    """Per iteration: a fingerprint of the batch (data order) and the learning rate."""

    def __init__(self):
        self.batches, self.lrs = [], []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.batches.append([round(float(x.float().sum()), 1) for x in data_batch['inputs']])

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.lrs.append(runner.optim_wrapper.get_lr()['lr'][0])


def _runner(work_dir, name, extra_hooks=(), rng_hook=True, resume=False, **kwargs):
    loader = dict(batch_size=4, num_workers=0, collate_fn=dict(type='pseudo_collate'))
    hooks = [dict(type='SemanticMappingHook')]
    if rng_hook:
        hooks.append(dict(type='RNGStateHook'))
    kwargs = {**dict(custom_hooks=hooks + list(extra_hooks), **_EPOCH_BASED), **kwargs}
    return Runner(
        model=tiny_classifier_cfg(num_classes=5, prompt_dropout=0.3),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(dataset=TinyClsDataset(5, per_class=4),
                              sampler=kwargs.pop('sampler', dict(type='DefaultSampler',
                                                                 shuffle=True)), **loader),
        val_dataloader=dict(dataset=TinyClsDataset(5, per_class=2, seed=1),
                            sampler=dict(type='DefaultSampler', shuffle=True), **loader),
        val_evaluator=dict(type='Accuracy', topk=(1, )),
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.01)),
        default_scope='mmpretrain',
        randomness=dict(seed=0),
        resume=resume,
        **kwargs)


_EPOCH_BASED = dict(
    train_cfg=dict(by_epoch=True, max_epochs=MAX_EPOCHS, val_interval=1),
    param_scheduler=[
        dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
             convert_to_iter_based=True),
        dict(type='CosineAnnealingLR', T_max=MAX_EPOCHS - 1, by_epoch=True, begin=1,
             end=MAX_EPOCHS, convert_to_iter_based=True)],
    default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                       logger=dict(type='LoggerHook', interval=1)))


def _next_second(runner):
    """Wait until a new Runner gets another timestamp than ``runner``: runners of one work_dir
    built in the same second share their log file."""
    while time.strftime('%Y%m%d_%H%M%S') == runner.timestamp:
        time.sleep(0.05)


def _mappings(runner):
    """The class -> prompt mapping of every remap, read from the run's remap history."""
    return [r.class_to_prompt for r in read_remap_history(runner.log_dir)]


def _assert_state_equal(a, b, atol):
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_state_equal(a[key], b[key], atol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_state_equal(x, y, atol)
    else:
        assert a == b


def _interrupted_and_resumed(work_dir, rng_hook=True):
    first, second = _Record(), _Record()
    crashed = _runner(work_dir, 'crashed', [first, _CrashAfterEpoch(CRASH_AFTER)], rng_hook)
    with pytest.raises(_Crash):
        crashed.train()
    maps = _mappings(crashed)
    _next_second(crashed)
    resumed = _runner(work_dir, 'resumed', [second], rng_hook, resume=True)  # --resume
    resumed.train()
    return resumed, maps + _mappings(resumed), first, second


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    record = _Record()
    runner = _runner(tmp_path_factory.mktemp('uninterrupted'), 'uninterrupted', [record])
    runner.train()
    return runner, _mappings(runner), record


def test_resumed_run_equals_uninterrupted_run(uninterrupted, tmp_path):
    ref, ref_maps, ref_record = uninterrupted
    resumed, maps, first, second = _interrupted_and_resumed(tmp_path)
    # the same mapping at every remap: initial, then after each epoch
    assert len(ref_maps) == MAX_EPOCHS + 1 and maps == ref_maps
    # the same data order and learning rate at every iteration
    assert first.batches + second.batches == ref_record.batches
    assert first.lrs + second.lrs == pytest.approx(ref_record.lrs, rel=1e-12, abs=0)
    # the same weights, buffers (mapping, centroids), optimiser state and schedulers
    _assert_state_equal(resumed.model.state_dict(), ref.model.state_dict(), atol=1e-6)
    _assert_state_equal(resumed.optim_wrapper.state_dict(), ref.optim_wrapper.state_dict(),
                        atol=1e-6)
    assert resumed.optim_wrapper.get_lr() == ref.optim_wrapper.get_lr()
    _assert_state_equal([s.state_dict() for s in resumed.param_schedulers],
                        [s.state_dict() for s in ref.param_schedulers], atol=0)
    assert (resumed.epoch, resumed.iter) == (ref.epoch, ref.iter) == (MAX_EPOCHS, 15)


def test_checkpoint_holds_rng_state_loadable_with_weights_only(uninterrupted):
    ref = uninterrupted[0]
    ckpt = torch.load(f'{ref.work_dir}/epoch_1.pth', map_location='cpu', weights_only=True)
    state = ckpt['rng_state']
    assert state['world_size'] == 1 and len(state['states']) == 1
    assert set(state['states'][0]) >= {'python', 'numpy', 'torch'}


def test_without_rng_state_the_resumed_run_drifts(uninterrupted, tmp_path):
    """Why RNGStateHook exists: MMEngine reseeds on resume, so prompt dropout draws differ."""
    ref = uninterrupted[0]
    resumed, _, first, second = _interrupted_and_resumed(tmp_path, rng_hook=False)
    assert first.batches + second.batches == uninterrupted[2].batches  # data order is epoch-seeded
    prompts, ref_prompts = resumed.model.backbone.prompts[0], ref.model.backbone.prompts[0]
    assert (prompts - ref_prompts).abs().max() > 1e-4


class _CrashAfterIter(Hook):
    priority = 'LOWEST'

    def __init__(self, iteration):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iteration:
            raise _Crash


@pytest.mark.parametrize('sampler', [
    'DefaultSampler',
    'InfiniteSampler',
])
def test_iteration_based_resume_is_exact(tmp_path, sampler):
    """8 iterations of 5 batches a pass, remaps every 3, checkpoints every 4 (not at the end of
    a pass: with a DefaultSampler the loader's re-creation there draws from torch's generator
    after the checkpoint, see RNGStateHook)."""
    def runner(name, crash=(), resume=False):
        return _runner(
            tmp_path / ('ref' if name == 'ref' else 'run'), name, resume=resume,
            sampler=dict(type=sampler, shuffle=True),
            custom_hooks=[dict(type='SemanticMappingHook', interval=3, images_per_class=2),
                          dict(type='RNGStateHook'), *crash],
            train_cfg=dict(by_epoch=False, max_iters=8, val_interval=6),
            param_scheduler=dict(type='CosineAnnealingLR', T_max=8, by_epoch=False),
            default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=4,
                                               by_epoch=False),
                               logger=dict(type='LoggerHook', interval=1)))

    ref = runner('ref')
    ref.train()
    crashed = runner('crashed', [_CrashAfterIter(4)])
    with pytest.raises(_Crash):
        crashed.train()
    maps = _mappings(crashed)
    _next_second(crashed)
    resumed = runner('resumed', resume=True)
    resumed.train()
    assert maps + _mappings(resumed) == _mappings(ref)
    _assert_state_equal(resumed.model.state_dict(), ref.model.state_dict(), atol=1e-6)
    _assert_state_equal(resumed.optim_wrapper.state_dict(), ref.optim_wrapper.state_dict(),
                        atol=1e-6)


def test_gathered_rng_states_serve_one_checkpoint_only(monkeypatch):
    """With several ranks, states gathered for one save are never written into a later one."""
    from mmengine.logging import MMLogger

    import mmdavpt.engine.hooks.rng_state_hook as module

    monkeypatch.setattr(module, 'get_dist_info', lambda: (0, 2))
    monkeypatch.setattr(module, 'all_gather_object', lambda state: [state, state])
    hook = RNGStateHook()
    runner = type('R', (), {'logger': MMLogger.get_instance('rng-once')})()
    hook.after_train_epoch(runner)
    first, second = {}, {}
    hook.before_save_checkpoint(runner, first)
    hook.before_save_checkpoint(runner, second)  # nothing gathered since: no stale states
    assert len(first[module.CHECKPOINT_KEY]['states']) == 2
    assert module.CHECKPOINT_KEY not in second
