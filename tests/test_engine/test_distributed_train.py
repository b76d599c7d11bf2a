"""Two processes (gloo, CPU) train a tiny DA-VPT classifier with the real Runner and agree.

The processes are forked (they inherit the imported modules, so they start in a second) and
join an ``env://`` process group as ``torchrun`` would set it up; the Runner then runs with
``launcher='pytorch'``. On CPU, MMEngine's own ``init_dist`` would call ``torch.cuda.set_device``
and its default DDP wrapper would pass ``device_ids=[LOCAL_RANK]``: the group is created first
and the wrapper gets ``device_ids=None`` (see docs/distributed.md).
"""
import json
import os
import os.path as osp
import socket

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmdavpt.engine.hooks.mapping_hook import read_remap_history
from mmdavpt.engine.hooks.rng_state_hook import RNGStateHook  # noqa: F401  (registers it)

from conftest import TinyClsDataset, tiny_classifier_cfg

GLOBAL_BATCH = 4
EPOCHS = 2


class _Record(Hook):
    """Mapping after every remap, loss terms of the first step; single-process: shard losses."""

    priority = 'LOW'  # after SemanticMappingHook (NORMAL) has remapped

    def __init__(self, shards=None):
        self.mappings, self.first_step, self.shard_losses = [], None, None
        self.after_first_step = None
        self.shards = shards

    def _mapping(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        self.mappings.append(model.guidance.mapping.class_to_prompt.tolist())

    def before_train(self, runner):
        self._mapping(runner)

    def after_train_epoch(self, runner):
        self._mapping(runner)

    @torch.no_grad()
    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter != 0 or self.shards is None:
            return
        model = runner.model
        self.shard_losses = {}
        for name, idx in self.shards.items():
            batch = {k: [v[i] for i in idx] for k, v in data_batch.items()}
            losses = model(**model.data_preprocessor(batch, True), mode='loss')
            self.shard_losses[name] = {k: float(v) for k, v in losses.items()}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter == 0:
            self.first_step = {k: float(v.detach()) for k, v in outputs.items()}
            model = runner.model.module if hasattr(runner.model, 'module') else runner.model
            self.after_first_step = {k: p.detach().flatten().tolist()
                                     for k, p in model.named_parameters() if p.requires_grad}


def _runner(work_dir, batch_size, hooks, **kwargs):
    return Runner(
        model=tiny_classifier_cfg(num_classes=5),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=TinyClsDataset(5, per_class=4),
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              batch_size=batch_size, num_workers=0,
                              collate_fn=dict(type='pseudo_collate')),
        train_cfg=dict(by_epoch=True, max_epochs=EPOCHS),
        # SGD: the first update is linear in the gradient, so it compares within float error
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5)),
        custom_hooks=[dict(type='SemanticMappingHook'), dict(type='RNGStateHook')] + hooks,
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        default_scope='mmpretrain',
        randomness=dict(seed=0),
        **kwargs)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _worker(rank, world, port, work_dir):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch_dist.init_process_group('gloo')
    import mmengine.runner.runner as runner_module
    written, save = [], runner_module.save_checkpoint

    def counting_save(checkpoint, filename, **kwargs):
        written.append(osp.basename(filename))
        return save(checkpoint, filename, **kwargs)

    runner_module.save_checkpoint = counting_save
    record = _Record()
    runner = _runner(
        work_dir, GLOBAL_BATCH // world, [record], launcher='pytorch',
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        # broadcast_buffers must stay False: each rank accumulates its own class statistics
        cfg=dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None,
                                        broadcast_buffers=False)))
    runner.train()
    out = dict(mappings=record.mappings, first_step=record.first_step, written=written,
               after_first_step=record.after_first_step,
               world_size=runner.world_size,
               num_remaps=int(runner.model.module.guidance.mapping.num_remaps))
    with open(osp.join(work_dir, f'rank{rank}.json'), 'w') as f:
        json.dump(out, f)
    torch_dist.destroy_process_group()


@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('dist'))
    mp.start_processes(_worker, args=(2, _free_port(), work_dir), nprocs=2, join=True,
                       start_method='fork')
    ranks = []
    for rank in range(2):
        with open(osp.join(work_dir, f'rank{rank}.json')) as f:
            ranks.append(json.load(f))
    return work_dir, ranks


@pytest.fixture(scope='module')
def single(tmp_path_factory):
    # DefaultSampler gives rank r the samples r, r + 2, ... of the shuffled order, so the first
    # global batch of 4 is rank 0's [0, 2] and rank 1's [1, 3] of the single run's first batch.
    record = _Record(shards=dict(rank0=[0, 2], rank1=[1, 3], all=[0, 1, 2, 3]))
    _runner(tmp_path_factory.mktemp('single'), GLOBAL_BATCH, [record]).train()
    return record


def test_ranks_hold_the_same_mapping_at_every_remap(two_ranks, single):
    _, (r0, r1) = two_ranks
    assert r0['world_size'] == r1['world_size'] == 2
    assert len(r0['mappings']) == EPOCHS + 1 and r0['num_remaps'] == r1['num_remaps'] == 3
    assert r0['mappings'] == r1['mappings']
    # the class statistics are summed over the ranks: the initial mapping of the frozen
    # backbone is the single-process one
    assert r0['mappings'][0] == single.mappings[0]


def test_first_step_cross_entropy_is_the_global_batch_loss(two_ranks, single):
    _, ranks = two_ranks
    ref = single.shard_losses
    assert single.first_step['loss_cls'] == pytest.approx(ref['all']['loss_cls'], abs=1e-5)
    # cross-entropy ('loss_cls', MMPretrain's head) is a mean over samples: the mean over the ranks
    # is the loss of the global batch
    mean_ce = sum(r['first_step']['loss_cls'] for r in ranks) / 2
    assert mean_ce == pytest.approx(ref['all']['loss_cls'], abs=1e-5)
    for rank, r in enumerate(ranks):
        assert r['first_step']['loss_cls'] == pytest.approx(ref[f'rank{rank}']['loss_cls'],
                                                            abs=1e-5)


def test_first_step_prompt_losses_are_the_global_batch_losses(two_ranks, single):
    # log-sum-exp over the samples of each prompt does not split into per-rank means: every
    # rank must see the samples of the whole global batch
    _, ranks = two_ranks
    for r in ranks:
        for key in ('loss_ml_xp', 'loss_ml_pcls'):
            assert r['first_step'][key] == pytest.approx(single.shard_losses['all'][key],
                                                         abs=1e-5), key


def test_first_update_equals_the_single_process_update(two_ranks, single):
    _, (r0, r1) = two_ranks
    assert r0['after_first_step'] == r1['after_first_step']  # DDP keeps the replicas equal
    for key, ref in single.after_first_step.items():
        torch.testing.assert_close(torch.tensor(r0['after_first_step'][key]), torch.tensor(ref),
                                   atol=1e-5, rtol=0, msg=key)


def test_checkpoints_are_written_once_by_rank_0(two_ranks):
    work_dir, (r0, r1) = two_ranks
    assert r0['written'] == [f'epoch_{e}.pth' for e in range(1, EPOCHS + 1)]
    assert r1['written'] == []
    assert sorted(f for f in os.listdir(work_dir) if f.endswith('.pth')) == \
        ['epoch_1.pth', 'epoch_2.pth']
    ckpt = torch.load(osp.join(work_dir, 'epoch_2.pth'), map_location='cpu', weights_only=True)
    assert ckpt['state_dict']['guidance.mapping.class_to_prompt'].tolist() == r0['mappings'][-1]
    assert ckpt['rng_state']['world_size'] == 2 and len(ckpt['rng_state']['states']) == 2


def test_remap_history_is_written_once_by_rank_0(two_ranks):
    work_dir, (r0, _) = two_ranks
    history = read_remap_history(work_dir)
    assert [r.class_to_prompt for r in history] == r0['mappings']  # 3 remaps, not 3 per rank
