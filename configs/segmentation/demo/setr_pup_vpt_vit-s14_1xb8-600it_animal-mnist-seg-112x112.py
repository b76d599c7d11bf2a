# Offline demo, the VPT-Deep baseline of
# setr_pup_davpt_vit-s14_1xb8-600it_animal-mnist-seg-112x112.py: 8 prompts in every layer (the
# last one too), no guidance, no class->prompt mapping.
_base_ = ['./setr_pup_davpt_vit-s14_1xb8-600it_animal-mnist-seg-112x112.py']
model = dict(backbone=dict(num_guided_prompts=0), guidance=None)
custom_hooks = []
