import json
import os
import socket
import uuid

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from mmengine.runner import Runner

from mmdavpt.engine.hooks.mapping_hook import REMAP_HISTORY_FILE, read_remap_history
from mmdavpt.models import SemanticMapping

from conftest import class_features, tiny_mapping_runner, tiny_seg_model


def _remap_lines(runner):
    with open(runner.logger.log_file) as f:
        return [line for line in f if 'DA-VPT remap' in line]


def _steps(history):
    return [(r.unit, r.step, r.initial) for r in history]


def test_hook_epoch_based_remaps_after_every_epoch(tmp_path):
    runner = tiny_mapping_runner(tmp_path, dict(by_epoch=True, max_epochs=2))
    runner.train()
    mapping = runner.model.guidance.mapping
    assert int(mapping.num_remaps) == 3  # initial + 2 epochs
    lines = _remap_lines(runner)
    assert ['(initial)' in lines[0], 'after epoch 1' in lines[1], 'after epoch 2' in lines[2]] \
        == [True] * 3
    assert 'k-means' in lines[0] and 'classes moved' in lines[0]
    logged = json.loads(lines[-1].split('class_to_prompt=')[1])
    assert logged == mapping.class_to_prompt.tolist()
    assert len(set(logged)) == 2  # 5 classes on 2 guided prompts
    # the same remaps as data, in the run's log dir
    history = read_remap_history(runner.log_dir)
    assert os.listdir(runner.log_dir).count(REMAP_HISTORY_FILE) == 1
    assert _steps(history) == [('epoch', 0, True), ('epoch', 1, False), ('epoch', 2, False)]
    assert [r.when for r in history] == ['initial', 'after epoch 1', 'after epoch 2']
    assert history[-1].class_to_prompt == logged
    assert [r.num_seen_classes for r in history] == [5, 5, 5]
    before = [[c % 2 for c in range(5)]] + [r.class_to_prompt for r in history]  # placeholder
    assert [r.moved_fraction for r in history] == [
        pytest.approx(sum(a != b for a, b in zip(old, r.class_to_prompt)) / 5)
        for old, r in zip(before, history)]
    assert all(r.kmeans_seconds >= 0 for r in history)
    # the checkpoint holds the mapping, and resume restores it without a new initial pass
    ckpt = torch.load(tmp_path / 'epoch_2.pth', map_location='cpu', weights_only=False)
    assert torch.equal(ckpt['state_dict']['guidance.mapping.class_to_prompt'],
                       mapping.class_to_prompt)
    resumed = tiny_mapping_runner(tmp_path / 'resumed', dict(by_epoch=True, max_epochs=3),
                      resume=True, load_from=str(tmp_path / 'epoch_2.pth'))
    resumed.train()
    lines = _remap_lines(resumed)
    assert len(lines) == 1 and 'after epoch 3' in lines[0]
    assert int(resumed.model.guidance.mapping.num_remaps) == 4
    assert _steps(read_remap_history(str(tmp_path / 'resumed'))) == [('epoch', 3, False)]


def test_hook_iter_based_remaps_every_interval(tmp_path):
    runner = tiny_mapping_runner(tmp_path, dict(by_epoch=False, max_iters=6, val_interval=100),
                     hook=dict(type='SemanticMappingHook', interval=2, images_per_class=2))
    runner.train()
    lines = _remap_lines(runner)
    assert ['after iteration 2' in lines[1], 'after iteration 4' in lines[2],
            'after iteration 6' in lines[3]] == [True] * 3
    assert len(lines) == 4
    assert _steps(read_remap_history(runner.work_dir)) == [
        ('iteration', 0, True), ('iteration', 2, False), ('iteration', 4, False),
        ('iteration', 6, False)]


def test_remap_history_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match='no remap history'):
        read_remap_history(str(tmp_path / 'missing'))
    assert read_remap_history(str(tmp_path)) == []  # a work dir without a DA-VPT run
    bad = tmp_path / REMAP_HISTORY_FILE
    bad.write_text('{"unit": "epoch", "step": 1}\n')
    with pytest.raises(ValueError, match=f'{REMAP_HISTORY_FILE}:1 is not a remap record'):
        read_remap_history(str(tmp_path))


def test_initial_pass_is_one_pass_of_the_train_config_with_an_infinite_sampler(tmp_path):
    """MMSeg's iteration-based configs train from an InfiniteSampler: the initial pass still
    sees every sample once, in batches of the train dataloader's batch size."""
    runner = tiny_mapping_runner(tmp_path, dict(by_epoch=False, max_iters=1, val_interval=100),
                     sampler=dict(type='InfiniteSampler', shuffle=True))
    hook = runner._hooks[[type(h).__name__ for h in runner._hooks].index('SemanticMappingHook')]
    model, mapping = runner.model, runner.model.guidance.mapping
    batches, seen = [], []
    features = model.mapping_features

    def spy_features(inputs, data_samples, prompts=True):
        batches.append((len(inputs), prompts))
        if len(batches) > 10:
            raise RuntimeError('the initial pass does not end')
        return features(inputs, data_samples, prompts=prompts)

    model.mapping_features = spy_features
    original = mapping.remap
    mapping.remap = lambda: (seen.append(mapping.class_count.clone()), original())[1]
    hook.before_train(runner)
    assert batches == [(4, False)] * 5  # 20 samples, batch_size=4, without prompts
    assert seen[0].tolist() == [4] * 5


def test_images_per_class_caps_the_initial_pass(tmp_path):
    runner = tiny_mapping_runner(tmp_path, dict(by_epoch=True, max_epochs=1),
                     hook=dict(type='SemanticMappingHook', images_per_class=1))
    hook = runner._hooks[[type(h).__name__ for h in runner._hooks].index('SemanticMappingHook')]
    seen = []
    mapping = runner.model.guidance.mapping
    original = mapping.remap

    def spy():
        seen.append(mapping.class_count.clone())
        return original()

    mapping.remap = spy
    hook.before_train(runner)
    assert seen[0].tolist() == [1, 1, 1, 1, 1]


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _dist_worker(rank, world, port, out_dir):
    torch_dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                                  world_size=world)
    feats, labels = class_features(C=12, per_class=6)
    mapping = SemanticMapping(12, 3, 8, seed=rank)  # different seeds: rank 0 must win
    shard = torch.arange(len(labels)) % world == rank
    mapping.accumulate(feats[shard], labels[shard])
    mapping.remap()
    torch.save({k: v for k, v in mapping.state_dict().items()}, os.path.join(out_dir, f'{rank}'))
    torch_dist.destroy_process_group()


def test_two_process_gloo_ranks_hold_the_same_mapping(tmp_path):
    mp.spawn(_dist_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f'{r}', weights_only=True) for r in (0, 1))
    assert torch.equal(r0['class_to_prompt'], r1['class_to_prompt'])
    assert torch.equal(r0['centroids'], r1['centroids'])
    single = SemanticMapping(12, 3, 8, seed=0)
    single.accumulate(*class_features(C=12, per_class=6))
    single.remap()
    assert torch.equal(single.class_to_prompt, r0['class_to_prompt'])
    torch.testing.assert_close(single.centroids, r0['centroids'])


def test_initial_pass_pads_segmentation_crops_of_different_sizes():
    """MMSeg's random crops (cat_max_ratio, images smaller than the crop) differ in size; the
    initial pass pads them to one batch as training does, ignoring the padding."""
    from types import SimpleNamespace

    from mmengine.logging import MMLogger
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from mmdavpt.engine.hooks import SemanticMappingHook


    def item(h, w, label):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.full((1, h, w), label))
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w)))
        return dict(inputs=torch.randint(0, 255, (3, h, w), dtype=torch.uint8),
                    data_samples=sample)

    data = [item(32, 24, 0), item(24, 32, 1), item(32, 32, 2), item(16, 32, 3)]
    model = tiny_seg_model()
    train_cfg = dict(dataset=data, batch_size=2, sampler=dict(type='InfiniteSampler'),
                     collate_fn=dict(type='pseudo_collate'))
    runner = SimpleNamespace(
        model=model, seed=0, logger=MMLogger.get_instance(f'pad-{uuid.uuid4().hex}'),
        _train_dataloader=train_cfg, train_dataloader=SimpleNamespace(dataset=data),
        build_dataloader=Runner.build_dataloader)
    SemanticMappingHook()._initial_pass(runner)
    # every labelled 8 x 8 patch counted once: the padding (ignore index) is not a class
    assert model.guidance.mapping.class_count.tolist() == [12, 12, 16, 8]
