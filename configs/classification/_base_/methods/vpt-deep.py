# VPT-Deep: num_prompts new learnable tokens at every layer (set per task), prompt dropout 0.1.
_base_ = [
    '../../../_base_/models/davpt_vit-b16.py',
    '../../../_base_/default_runtime_cls.py',
    '../../../_base_/schedules/adamw_bs32_100e_warmup10_cosine.py',
]
model = dict(
    backbone=dict(prompt_mode='deep', num_prompts=10, num_guided_prompts=0, prompt_dropout=0.1))
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=1e-4))
