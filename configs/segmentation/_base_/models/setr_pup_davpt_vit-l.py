# SETR-PUP (MMSeg's setr_pup.py) on a frozen ViT-L/16 with DA-VPT. DAVPTViT replaces MMSeg's
# VisionTransformer and hands the heads the same features as upstream SETR-PUP: the patch tokens of
# layers 9, 14, 19 and 23, no final norm, CLS and prompts removed. VPT-Deep prompts: 20 per layer,
# M = 10 guided prompts in the last layer (the classes are mapped onto them, remapped by
# SemanticMappingHook). Each dataset config (configs/segmentation/setr_pup_davpt_*.py) sets the
# classes of the heads, the crop size, the remapping interval and the schedule; the other methods of
# the paper's Table 2 are short diffs of those.
#
# Weights: the IN-21k ViT-L/16 converted to the mmdavpt layout, e.g.
#   python tools/model_converters/vit_jax2mmdavpt.py ViT-L_16.npz \
#       checkpoints/vit-l16_in21k_mmdavpt.pth
# (timm weights: tools/model_converters/timm2mmdavpt.py). Every backbone key must match.
_base_ = ['mmseg::_base_/models/setr_pup.py']

custom_imports = dict(imports=['mmdavpt'], allow_failed_imports=False)
vit_checkpoint = 'checkpoints/vit-l16_in21k_mmdavpt.pth'
# What the heads get, as from upstream's SETR-PUP ViT-L (also the full fine-tuning backbone's).
setr_vit_features = dict(
    patch_size=16,
    out_indices=(9, 14, 19, 23),
    out_type='featmap',
    final_norm=False,
    interpolate_mode='bilinear',
    drop_rate=0.)

model = dict(
    type='DAVPTEncoderDecoder',
    # The normalisation the IN-21k ViT weights were trained with (upstream SETR uses ImageNet's
    # mean/std with them; a frozen backbone should see its own input statistics).
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='DAVPTViT',
        arch='l',
        img_size=(512, 512),
        **setr_vit_features,
        num_prompts=20,
        guided_layers=(-1, ),
        num_guided_prompts=10,
        prompt_dropout=0.,
        bias_tuning=(),
        train_cls_token=False,
        with_cp=False,  # activation checkpointing; see tools/analysis/seg_memory.py
        init_cfg=dict(type='Pretrained', checkpoint=vit_checkpoint)),
    # beta * L_ML(x, p) on the patch tokens (patch label = majority ground-truth label), beta =
    # 0.01, and no lambda * L_ML(p, x_cls) (the SETR heads never read the CLS token): what won
    # on the offline demo over 3 seeds (docs/segmentation.md; not measured on ADE20K).
    # The samples are the post-W_O MHSA output ('mhsa_proj'), what the demo measured; the paper's
    # pre-W_O reading is sample_side='mhsa'. The paper's setting: loss_weight=0.1 and
    # loss_pcls=dict(type='ClsPromptLoss', loss_weight=0.1).
    guidance=dict(
        loss_xp=dict(type='PatchPromptLoss', loss_weight=0.01, sample_side='mhsa_proj'),
        mapping=dict(seed=0)))

# Upstream's ADE20K SETR-PUP auxiliary head (setr_vit-l_pup_8xb2-160k_ade20k-512x512.py); each
# dataset config puts one on layers 9, 14 and 19 (in_index 0-2) with its number of classes:
#     auxiliary_head=[dict(_base_.setr_aux_head, in_index=i, num_classes=num_classes)
#                     for i in range(3)]
setr_aux_head = dict(
    type='SETRUPHead',
    in_channels=1024,
    channels=256,
    dropout_ratio=0,
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    act_cfg=dict(type='ReLU'),
    num_convs=2,
    kernel_size=3,
    align_corners=False,
    loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4))

# Full fine-tuning (configs/segmentation/setr_pup_full_*.py): MMPretrain's VisionTransformer with
# the same weights and features as the DAVPTViT above; the configs add their img_size.
setr_full_backbone = dict(
    type='mmpretrain.VisionTransformer',
    arch='l',
    **setr_vit_features,
    init_cfg=dict(type='Pretrained', checkpoint=vit_checkpoint))

# Initial mapping from the frozen backbone, then a remap every `interval` iterations (the dataset
# configs set it to about one epoch).
custom_hooks = [dict(type='SemanticMappingHook', interval=1000)]
