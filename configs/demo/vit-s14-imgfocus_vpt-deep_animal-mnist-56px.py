# Demo: VPT-Deep, 5 prompts in every layer. Learning rate and weight decay are the best of the
# equal-budget search on val (docs/reports/evidence.md; unrounded, so this config trains exactly
# the runs measured there).
_base_ = ['./_base_/vit-s14-imgfocus_animal-mnist-56px.py']
model = dict(backbone=dict(prompt_mode='deep', num_prompts=5, num_guided_prompts=0))
optim_wrapper = dict(optimizer=dict(lr=0.0064664227174145595, weight_decay=0.0037665768415992965))
