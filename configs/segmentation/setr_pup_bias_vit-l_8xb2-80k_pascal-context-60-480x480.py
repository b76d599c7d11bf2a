# Bias (Table 2 "Bias"): the linear setting plus the attention biases of the frozen ViT-L (q, k,
# v and the output projection), no prompts: 13.2M tunable parameters, as the paper counts. BitFit
# proper (every bias) is bias_tuning=('q', 'k', 'v', 'proj', 'fc1', 'fc2', 'norm'), 13.4M.
_base_ = ['./setr_pup_linear_vit-l_8xb2-80k_pascal-context-60-480x480.py']
model = dict(backbone=dict(bias_tuning=('q', 'k', 'v', 'proj')))
