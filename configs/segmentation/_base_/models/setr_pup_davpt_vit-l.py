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
        patch_size=16,
        out_indices=(9, 14, 19, 23),
        out_type='featmap',
        final_norm=False,
        interpolate_mode='bilinear',
        drop_rate=0.,
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
    # on the offline demo over 3 seeds (docs/segmentation.md, issue 12; not measured on ADE20K).
    # The paper's setting: loss_weight=0.1 and loss_pcls=dict(type='ClsPromptLoss',
    # loss_weight=0.1).
    guidance=dict(
        loss_xp=dict(type='PatchPromptLoss', loss_weight=0.01),
        mapping=dict(seed=0)))

# Initial mapping from the frozen backbone, then a remap every `interval` iterations (the dataset
# configs set it to about one epoch).
custom_hooks = [dict(type='SemanticMappingHook', interval=1000)]
