# DA-VPT+ (Table 2 "DA-VPT+"): DA-VPT plus the biases of the key and value projections and the
# CLS token (paper section 2.5).
_base_ = ['./setr_pup_davpt_vit-l_8xb2-160k_ade20k-512x512.py']
model = dict(backbone=dict(bias_tuning=('k', 'v'), train_cls_token=True))
