# DA-VPT+ as the official code (Noahsark/DA-VPT) runs it, as one variable that a config puts on a
# DA-VPT+ base: ./davpt-plus_official.py (the paper's setting) and the demo's
# configs/demo/vit-s14-imgfocus_davpt-plus-official_animal-mnist-56px.py. docs/official_recipe.md
# gives the source of every value. Differences from ./davpt-plus.py (the paper's reading):
# - losses: one sample per image, the mean of the guided block's input patches; raw prompts;
#   1/tau = alpha * scale = 32 * 5 = 160 and margin delta / scale = 0.1 / 5 = 0.02 on the cosine;
#   the positive term averaged over all M prompts; beta = lambda = 0.01 (its most common value);
# - biases: v, k, attention output projection, fc2 and the LayerNorm biases, plus the CLS token
#   (the k bias is inert: it gets an exactly zero gradient; docs/official_recipe.md);
# - no prompt dropout;
# - optimiser: weight decay 0.05 on prompts and CLS token, none on biases and other 1-D
#   parameters, wd_head = 3 on the head's weight (decay_mult 3 / 0.05 = 60); gradient VALUES
#   clipped at 10 (torch.nn.utils.clip_grad_value_, as the official train.py). The learning rate
#   is the config's.
# Not expressible here: its class-balanced 16 x 2 batches belong to the experiment config
# (a base that sets train_dataloader would clash with the dataset base), e.g.
#   train_dataloader = dict(sampler=dict(_delete_=True, type='ClassBalancedSampler',
#                                        batch_size=32, samples_per_class=2))
# Use (a base with no _base_ of its own, so that it combines with any other):
#   _base_ = ['<a DA-VPT+ config>', '<this file>']
#   model = _base_.davpt_plus_official.model
#   optim_wrapper = dict(_base_.davpt_plus_official.optim_wrapper,
#                        optimizer=dict(lr=<lr>, weight_decay=0.05))
davpt_plus_official = dict(
    model=dict(
        backbone=dict(bias_tuning=('k', 'v', 'proj', 'fc2', 'norm'), train_cls_token=True,
                      prompt_dropout=0.),
        guidance=dict(
            loss_xp=dict(type='PatchPromptLoss', loss_weight=0.01, sample_side='block_input_mean',
                         prompt_side='raw', temperature=1 / 160, margin=0.02,
                         positive_norm='all'),
            loss_pcls=dict(type='ClsPromptLoss', loss_weight=0.01, prompt_side='raw',
                           temperature=1 / 160, margin=0.02, positive_norm='all'))),
    optim_wrapper=dict(
        clip_grad=dict(type='value', clip_value=10.),
        paramwise_cfg=dict(
            norm_decay_mult=0., bias_decay_mult=0., flat_decay_mult=0.,
            custom_keys={'head.fc.weight': dict(decay_mult=3 / 0.05)})))
