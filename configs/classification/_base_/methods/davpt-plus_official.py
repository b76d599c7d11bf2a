# DA-VPT+ as the official code (Noahsark/DA-VPT) runs it: the paper's DA-VPT+ (./davpt-plus.py)
# with the official recipe (./davpt-plus_official_recipe.py says what it changes) at lr 1e-3.
_base_ = ['./davpt-plus.py', './davpt-plus_official_recipe.py']
model = _base_.davpt_plus_official.model
optim_wrapper = dict(_base_.davpt_plus_official.optim_wrapper,
                     optimizer=dict(lr=1e-3, weight_decay=0.05))
