# Full fine-tuning (Table 2 "Full"): every parameter trains. The backbone is MMPretrain's
# VisionTransformer (DAVPTViT is frozen by design) with the same weights file and the same features
# (layers 9, 14, 19, 23, no final norm); MMSeg's VisionTransformer would need the weights in MMSeg's
# key layout. Upstream's optimizer: the ViT at the base rate, the heads x10.
_base_ = ['./setr_pup_davpt_vit-l_8xb2-80k_pascal-context-60-480x480.py']
model = dict(
    guidance=None,  # DAVPTEncoderDecoder without guidance is MMSeg's EncoderDecoder
    backbone=dict(_base_.setr_full_backbone, _delete_=True, img_size=_base_.crop_size))
custom_hooks = []
optim_wrapper = dict(paramwise_cfg=dict(custom_keys=dict(_delete_=True, head=dict(lr_mult=10.))))
