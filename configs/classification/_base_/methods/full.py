# Full fine-tuning: every parameter of the ViT and the head trains (MMPretrain's ViT).
_base_ = [
    '../../../_base_/models/vit-b16_full-finetune.py',
    '../../../_base_/default_runtime_cls.py',
    '../../../_base_/schedules/adamw_bs32_100e_warmup10_cosine.py',
]
optim_wrapper = dict(optimizer=dict(lr=5e-5, weight_decay=0.05))
