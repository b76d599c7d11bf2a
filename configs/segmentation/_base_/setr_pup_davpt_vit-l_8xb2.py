# What the SETR-PUP DA-VPT dataset configs (../setr_pup_davpt_vit-l_8xb2-*.py) share: the model
# (./models/setr_pup_davpt_vit-l.py), MMSeg's runtime, and upstream's SETR-PUP optimizer. A
# dataset config adds its dataset and schedule bases (the schedule's optimizer is a sibling's key,
# so the dataset config sets `optim_wrapper = _base_.setr_davpt_optim_wrapper`) and what follows
# from the dataset: the classes of the heads, the crop size, the slide-test stride, the remap
# interval and the strict pipelines.
_base_ = ['./models/setr_pup_davpt_vit-l.py', 'mmseg::_base_/default_runtime.py']

# Upstream's SGD (lr 1e-3, no weight decay, heads x10). The few tuned backbone tensors (prompts,
# tuned biases, CLS token) take the heads' rate; the full fine-tuning configs keep x1 for the ViT.
setr_davpt_optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(lr=0.001, weight_decay=0.0),
    paramwise_cfg=dict(custom_keys={
        'head': dict(lr_mult=10.),
        'backbone': dict(lr_mult=10.)
    }))
