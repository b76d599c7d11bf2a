# DA-VPT+: DA-VPT that also tunes the key and value biases of every attention layer and the
# CLS token (paper section 2.5).
_base_ = ['./davpt.py']
model = dict(backbone=dict(bias_tuning=('k', 'v'), train_cls_token=True))
