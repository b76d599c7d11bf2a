# VPT-Deep (Table 2 "VPT"): 20 prompts in every layer, the last one included; no guidance and no
# class->prompt mapping.
_base_ = ['./setr_pup_davpt_vit-l_8xb2-80k_pascal-context-60-480x480.py']
model = dict(backbone=dict(num_guided_prompts=0), guidance=None)
custom_hooks = []
