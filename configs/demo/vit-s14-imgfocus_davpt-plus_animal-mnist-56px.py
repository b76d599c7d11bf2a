# Demo: DA-VPT+ = DA-VPT + the key/value biases of every attention layer + the CLS token.
_base_ = ['./vit-s14-imgfocus_davpt_animal-mnist-56px.py']
model = dict(backbone=dict(bias_tuning=('k', 'v'), train_cls_token=True))
