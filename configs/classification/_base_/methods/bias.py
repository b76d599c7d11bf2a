# Bias tuning (BitFit): every bias of the frozen ViT (q, k, v, output projection, both MLP layers,
# the LayerNorms) and the head train; no prompts.
_base_ = [
    '../../../_base_/models/davpt_vit-b16.py',
    '../../../_base_/default_runtime_cls.py',
    '../../../_base_/schedules/adamw_bs32_100e_warmup10_cosine.py',
]
model = dict(backbone=dict(bias_tuning=('q', 'k', 'v', 'proj', 'fc1', 'fc2', 'norm')))
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=1e-4))
