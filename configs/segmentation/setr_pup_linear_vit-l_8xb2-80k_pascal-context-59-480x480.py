# Linear (head only, Table 2 "Linear"): the frozen ViT-L without prompts; only the SETR-PUP heads
# train.
_base_ = ['./setr_pup_davpt_vit-l_8xb2-80k_pascal-context-59-480x480.py']
model = dict(backbone=dict(num_prompts=0, num_guided_prompts=0), guidance=None)
custom_hooks = []
