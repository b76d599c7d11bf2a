"""Tiny models and data shared by the tests (a few thousand parameters, CPU-fast)."""
import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmpretrain.structures import DataSample

TINY_ARCH = dict(embed_dims=32, num_layers=3, num_heads=4, feedforward_channels=64)


def tiny_backbone_cfg(**kwargs) -> dict:
    """A random tiny DAVPTViT; tests that need pre-trained weights set ``init_cfg``."""
    cfg = dict(type='DAVPTViT', arch=TINY_ARCH, img_size=32, patch_size=8, num_prompts=3,
               num_guided_prompts=2, allow_random_backbone=True)
    cfg.update(kwargs)
    return cfg


def tiny_classifier_cfg(num_classes: int = 5, guidance: bool = True, fixed_mapping: bool = False,
                        **backbone) -> dict:
    """``fixed_mapping`` keeps the placeholder class->prompt mapping, for tests that call
    ``model.loss`` without a ``SemanticMappingHook``."""
    return dict(
        type='DAVPTImageClassifier',
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=num_classes,
                               mean=[127.5] * 3, std=[127.5] * 3),
        backbone=tiny_backbone_cfg(**backbone),
        neck=None,
        head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=32,
                  loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        guidance=dict(loss_xp=dict(type='PatchPromptLoss', loss_weight=0.5),
                      loss_pcls=dict(type='ClsPromptLoss', loss_weight=0.5),
                      mapping=dict(seed=0, fixed=fixed_mapping)) if guidance else None)


class TinyClsDataset(BaseDataset):
    """Random 32x32 images whose mean colour depends on the class (learnable, deterministic)."""

    def __init__(self, num_classes: int = 5, per_class: int = 4, seed: int = 0) -> None:
        self.num_classes = num_classes
        self.per_class = per_class
        self.seed = seed
        super().__init__(lazy_init=False, serialize_data=False)

    def load_data_list(self):
        rng = np.random.default_rng(self.seed)
        items = []
        for c in range(self.num_classes):
            for _ in range(self.per_class):
                img = rng.integers(0, 60, (3, 32, 32)) + 40 * c
                items.append(dict(img=img.astype(np.uint8), label=c))
        return items

    def prepare_data(self, idx):
        item = self.get_data_info(idx)
        return dict(inputs=torch.from_numpy(item['img']),
                    data_samples=DataSample().set_gt_label(item['label']))
