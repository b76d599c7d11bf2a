# DA-VPT added to MMSeg's own SETR-PUP config (ViT-L/16, ADE20K, 512 x 512, 160k iterations), the
# way docs/composing.md describes for any MMSeg config with a VisionTransformer backbone:
#   tools/train.py configs/composing/setr_vit-l_pup_davpt_8xb2-160k_ade20k-512x512.py
# Everything not set here (heads, data, schedule, the backbone's pre-trained weights
# pretrain/vit_large_p16.pth) is upstream's. Tested at tiny size in tests/test_composing.py.
_base_ = ['mmseg::setr/setr_vit-l_pup_8xb2-160k_ade20k-512x512.py']
# The import comes after `_base_` (else MMEngine reads this as a "lazy" new-style config).
from mmdavpt.utils.compose import mmseg_vit_to_davpt, strict_pipeline  # noqa: E402

custom_imports = dict(imports=['mmdavpt'], allow_failed_imports=False)
num_classes = 150

model = dict(
    type='DAVPTEncoderDecoder',  # EncoderDecoder + the guidance losses
    pretrained=None,  # DAVPTViT takes its weights through init_cfg (carried over below)
    # MMSeg's ViT and DAVPTViT name their arguments differently, so the backbone is replaced
    # (_delete_=True); mmseg_vit_to_davpt carries upstream's settings over: ViT-L, 512 x 512,
    # out_indices (9, 14, 19, 23), final_norm=False, the interpolation mode, the dropout rates,
    # init_cfg. The frozen backbone then gets VPT-Deep prompts and M guided prompts.
    backbone=mmseg_vit_to_davpt(
        _base_.model.backbone,
        pretrained=_base_.model.pretrained,
        num_prompts=20,
        guided_layers=(-1, ),
        num_guided_prompts=10,
        bias_tuning=()),  # ('k', 'v') and train_cls_token=True for DA-VPT+
    guidance=dict(
        loss_xp=dict(type='PatchPromptLoss', loss_weight=0.1),
        loss_pcls=dict(type='ClsPromptLoss', loss_weight=0.1),
        mapping=dict(seed=0)))

# Upstream multiplies the heads' learning rate by 10 ('head'); the prompts live in the backbone
# and would train at x1 without this line (the dict merges with upstream's custom_keys).
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=10.)}))

# The class -> prompt mapping: an initial pass over the training set before iteration 1, then a
# remap every `interval` iterations (20,210 images / 16 per iteration: about one epoch). The
# upstream config has no custom_hooks; with a base that has some, append instead:
#   custom_hooks = _base_.custom_hooks + [dict(type='SemanticMappingHook', interval=1250)]
custom_hooks = [dict(type='SemanticMappingHook', interval=1250)]

# Broken data stops the run, naming the file: strict image loading for training (the test
# pipelines keep LoadImageFromFile, which the inferencers look for), and every mask checked
# against its image's size and the classes (+ 255, ignored) right after LoadAnnotations.
train_dataloader = dict(
    dataset=dict(pipeline=strict_pipeline(_base_.train_pipeline, num_classes=num_classes)))
val_dataloader = dict(
    dataset=dict(pipeline=strict_pipeline(_base_.test_pipeline, num_classes=num_classes,
                                          strict_loading=False)))
test_dataloader = val_dataloader
tta_pipeline = strict_pipeline(_base_.tta_pipeline, num_classes=num_classes,
                               strict_loading=False)
