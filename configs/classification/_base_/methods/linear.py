# Linear probe: the frozen ViT's final CLS feature, only the linear head trains.
_base_ = [
    '../../../_base_/models/davpt_vit-b16.py',
    '../../../_base_/default_runtime_cls.py',
    '../../../_base_/schedules/adamw_bs32_100e_warmup10_cosine.py',
]
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=1e-4))
