# Demo: VPT-Deep + the same tuned parameters DA-VPT+ adds to DA-VPT (the key/value biases of every
# attention layer and the CLS token): the baseline that separates the guidance losses from the
# biases. The key bias cannot change the output (softmax ignores a shift common to
# all of a query's logits); it is counted for parity with DA-VPT+.
_base_ = ['./vit-s14-imgfocus_vpt-deep_animal-mnist-56px.py']
model = dict(backbone=dict(bias_tuning=('k', 'v'), train_cls_token=True))
