import json
import os
import socket
import uuid

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from mmdavpt.models import SemanticMapping

from conftest import class_features, tiny_mapping_runner, tiny_seg_model


def _remap_lines(runner):
    with open(runner.logger.log_file) as f:
        return [line for line in f if 'DA-VPT remap' in line]


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


def test_hook_iter_based_remaps_every_interval(tmp_path):
    runner = tiny_mapping_runner(tmp_path, dict(by_epoch=False, max_iters=6, val_interval=100),
                     hook=dict(type='SemanticMappingHook', interval=2, images_per_class=2))
    runner.train()
    lines = _remap_lines(runner)
    assert ['after iteration 2' in lines[1], 'after iteration 4' in lines[2],
            'after iteration 6' in lines[3]] == [True] * 3
    assert len(lines) == 4


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

    from mmengine.dataset import pseudo_collate
    from mmengine.logging import MMLogger
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    from torch.utils.data import DataLoader

    from mmdavpt.engine.hooks import SemanticMappingHook


    def item(h, w, label):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.full((1, h, w), label))
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w)))
        return dict(inputs=torch.randint(0, 255, (3, h, w), dtype=torch.uint8),
                    data_samples=sample)

    data = [item(32, 24, 0), item(24, 32, 1), item(32, 32, 2), item(16, 32, 3)]
    model = tiny_seg_model()
    runner = SimpleNamespace(
        model=model, seed=0, logger=MMLogger.get_instance(f'pad-{uuid.uuid4().hex}'),
        train_dataloader=DataLoader(data, batch_size=2, collate_fn=pseudo_collate))
    SemanticMappingHook()._initial_pass(runner)
    # every labelled 8 x 8 patch counted once: the padding (ignore index) is not a class
    assert model.guidance.mapping.class_count.tolist() == [12, 12, 16, 8]
