# DA-VPT added to MMPretrain's own ViT-B/16 ImageNet config (MAE fine-tuning recipe), the way
# docs/composing.md describes for any MMPretrain config with a VisionTransformer backbone:
#   tools/train.py configs/composing/vit-base-p16_davpt_32xb128-mae_in1k.py
# Everything not set here (data, Mixup/CutMix, AdamW schedule, EMAHook) is upstream's. Tested at
# tiny size in tests/test_composing.py.
_base_ = ['mmpretrain::vision_transformer/vit-base-p16_32xb128-mae_in1k.py']
# The import comes after `_base_` (else MMEngine reads this as a "lazy" new-style config).
from mmdavpt.utils.compose import strict_pipeline  # noqa: E402

custom_imports = dict(imports=['mmdavpt'], allow_failed_imports=False)

model = dict(
    type='DAVPTImageClassifier',  # ImageClassifier + the guidance losses
    # DAVPTViT takes MMPretrain's ViT arguments, so the upstream backbone (arch='base',
    # img_size=224, patch_size=16, ...) merges in unchanged. The patch size must be the one of
    # the weights (16 for these); tools/model_converters/ print it for a converted file.
    backbone=dict(
        type='DAVPTViT',
        num_prompts=10,
        guided_layers=(-1, ),
        num_guided_prompts=10,
        bias_tuning=(),  # ('k', 'v') and train_cls_token=True for DA-VPT+
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/vit-b16_mae_mmdavpt.pth')),
    guidance=dict(
        loss_xp=dict(type='PatchPromptLoss', loss_weight=0.1),
        loss_pcls=dict(type='ClsPromptLoss', loss_weight=0.1),
        mapping=dict(seed=0)))

# Append the mapping hook to upstream's custom_hooks (a plain `custom_hooks = [...]` would drop
# upstream's EMAHook). Initial mapping pass over the training set before iteration 1, then a
# remap after every epoch.
custom_hooks = _base_.custom_hooks + [dict(type='SemanticMappingHook', interval=1)]

# An empty or undecodable training image stops the run, naming the file. The test pipeline keeps
# upstream's LoadImageFromFile, which MMPretrain's ImageClassificationInferencer looks for.
train_dataloader = dict(dataset=dict(pipeline=strict_pipeline(_base_.train_pipeline)))
