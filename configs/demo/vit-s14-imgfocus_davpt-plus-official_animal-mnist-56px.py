# Demo: DA-VPT+ with the official code's recipe (configs/classification/_base_/methods/
# davpt-plus_official.py, docs/official_recipe.md) on the DA-VPT demo: official losses (block
# input mean vs raw prompts, 1/tau = 160, margin 0.02, positive term over all M prompts,
# beta = lambda = 0.01), biases of k, v, proj, fc2 and the LayerNorms + CLS token, class-balanced
# batches of 16 class slots x 2 images (10 classes: every class in every batch), weight decay
# 0.05 / none on biases / 3 on the head's weight, gradient values clipped at 10; the demo base's
# learning rate 5e-3 (the one it was measured with, docs/reports/evidence.md).
_base_ = ['./vit-s14-imgfocus_davpt_animal-mnist-56px.py']
model = dict(
    backbone=dict(bias_tuning=('k', 'v', 'proj', 'fc2', 'norm'), train_cls_token=True,
                  prompt_dropout=0.),
    guidance=dict(
        loss_xp=dict(type='PatchPromptLoss', loss_weight=0.01, sample_side='block_input_mean',
                     prompt_side='raw', temperature=1 / 160, margin=0.02, positive_norm='all'),
        loss_pcls=dict(type='ClsPromptLoss', loss_weight=0.01, prompt_side='raw',
                       temperature=1 / 160, margin=0.02, positive_norm='all')))
train_dataloader = dict(
    batch_size=32,
    sampler=dict(_delete_=True, type='ClassBalancedSampler', batch_size=32, samples_per_class=2))
optim_wrapper = dict(
    optimizer=dict(lr=5e-3, weight_decay=0.05),
    clip_grad=dict(type='value', clip_value=10.),
    paramwise_cfg=dict(
        norm_decay_mult=0., bias_decay_mult=0., flat_decay_mult=0.,
        custom_keys={'head.fc.weight': dict(decay_mult=3 / 0.05)}))
