# Demo: VPT-Deep, 5 prompts in every layer.
_base_ = ['./_base_/vit-s14-imgfocus_animal-mnist-56px.py']
model = dict(backbone=dict(prompt_mode='deep', num_prompts=5, num_guided_prompts=0))
