# Full fine-tuning: MMPretrain's own VisionTransformer (every parameter trains) + linear head.
# Weights, normalisation and num_classes are set as for configs/_base_/models/davpt_vit-b16.py.
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='VisionTransformer',
        arch='b',
        img_size=224,
        patch_size=16,
        out_type='cls_token',
        drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=None,  # set by the per-task config
        in_channels=768,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
