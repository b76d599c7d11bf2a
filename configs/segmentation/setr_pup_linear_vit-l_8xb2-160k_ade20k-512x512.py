# Linear (head only, Table 2 "Linear"): the frozen ViT-L without prompts; only the SETR-PUP heads
# train.
_base_ = ['./setr_pup_davpt_vit-l_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(num_prompts=0, num_guided_prompts=0), guidance=None)
custom_hooks = []
