# Demo: DA-VPT+ with the official code's recipe (configs/classification/_base_/methods/
# davpt-plus_official_recipe.py, docs/official_recipe.md) on the DA-VPT demo: official losses
# (block input mean vs raw prompts, 1/tau = 160, margin 0.02, positive term over all M prompts,
# beta = lambda = 0.01), biases of k, v, proj, fc2 and the LayerNorms + CLS token, class-balanced
# batches of 16 class slots x 2 images (10 classes: every class in every batch), weight decay
# 0.05 / none on biases / 3 on the head's weight, gradient values clipped at 10; the demo base's
# learning rate 5e-3 (the one it was measured with, docs/reports/evidence.md).
_base_ = [
    './vit-s14-imgfocus_davpt_animal-mnist-56px.py',
    '../classification/_base_/methods/davpt-plus_official_recipe.py'
]
model = _base_.davpt_plus_official.model
train_dataloader = dict(
    batch_size=32,
    sampler=dict(_delete_=True, type='ClassBalancedSampler', batch_size=32, samples_per_class=2))
optim_wrapper = dict(_base_.davpt_plus_official.optim_wrapper,
                     optimizer=dict(lr=5e-3, weight_decay=0.05))
