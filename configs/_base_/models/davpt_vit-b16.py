# Frozen ViT-B/16 (DAVPTViT) + linear head: with no prompts and no tuned biases this is the
# linear probe; the methods in configs/classification/_base_/methods add prompts, biases and the
# DA-VPT guidance. The pre-trained weights and input normalisation are set per pre-training in
# configs/classification/_base_/vit-b16-{in21k,mae,mocov3}_{method}.py; num_classes per task.
model = dict(
    type='DAVPTImageClassifier',
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='DAVPTViT',
        arch='b',
        img_size=224,
        patch_size=16,
        out_type='cls_token',
        num_prompts=0,
        num_guided_prompts=0,
        bias_tuning=(),
        train_cls_token=False),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=None,  # set by the per-task config
        in_channels=768,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
