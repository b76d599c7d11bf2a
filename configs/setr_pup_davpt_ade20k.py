# DA-VPT with SETR-PUP on ViT-L/16 (IN-21k), ADE20K 512x512, 160k iterations: the configuration
# of the design card. The variants (Table 2 methods, PASCAL Context 59/60) are in
# configs/segmentation/.
#   tools/train.py configs/setr_pup_davpt_ade20k.py
#   tools/test.py configs/setr_pup_davpt_ade20k.py CKPT [--tta]
_base_ = ['./segmentation/setr_pup_davpt_vit-l_8xb2-160k_ade20k-512x512.py']
