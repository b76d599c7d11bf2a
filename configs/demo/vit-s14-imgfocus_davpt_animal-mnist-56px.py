# Demo: DA-VPT, 5 prompts in layers 1-11 and M = 5 guided prompts in the last layer: fewer than
# the 10 classes, so the k-means mapping groups classes (re-clustered after every epoch).
# The patch samples are the MHSA output after the output projection ('mhsa_proj'), the tensor the
# measured demo figures (README, docs/classification.md) were trained with; the paper's
# pre-projection MHSA is sample_side='mhsa' (docs/official_recipe.md).
_base_ = ['./_base_/vit-s14-imgfocus_animal-mnist-56px.py']
model = dict(
    backbone=dict(prompt_mode='deep', num_prompts=5, guided_layers=(-1, ),
                  num_guided_prompts=5),
    guidance=dict(
        loss_xp=dict(type='PatchPromptLoss', loss_weight=0.1, sample_side='mhsa_proj', margin=0.1,
                     temperature=1 / 32),
        loss_pcls=dict(type='ClsPromptLoss', loss_weight=0.1, margin=0.1, temperature=1 / 32),
        mapping=dict(seed=0)))
custom_hooks = [dict(type='SemanticMappingHook', interval=1)]
