"""Class-weighted cross-entropy for segmentation masks with ignored pixels.

MMSeg 1.2.2's ``CrossEntropyLoss`` with ``class_weight`` computes its mean's denominator as
``torch.stack([class_weight[cls] for cls in label])``
(``mmseg/models/losses/cross_entropy_loss.py``, ``cross_entropy``): every pixel's label indexes
the class weights, and an ignored pixel (255 in ADE20K and PASCAL Context masks, and wherever
crops are padded) is out of range, an ``IndexError`` on CPU and a device-side assert on CUDA,
whether or not ``avg_non_ignore`` is set.
"""
from typing import Optional

import torch
from mmseg.models.losses import CrossEntropyLoss
from mmseg.registry import MODELS


@MODELS.register_module()
class ClassWeightedCrossEntropyLoss(CrossEntropyLoss):
    """MMSeg's ``CrossEntropyLoss`` whose ``class_weight`` works with ignored pixels.

    Same arguments and loss name as ``CrossEntropyLoss`` (softmax form only). With
    ``class_weight`` and ``reduction='mean'`` the loss is PyTorch's weighted mean
    ``sum_i w[y_i] * ce_i / sum_i w[y_i]`` over the pixels that are not ``ignore_index``: an
    ignored pixel has no class, hence no weight, so it does not count in the denominator (with
    or without ``avg_non_ignore``). Without ignored pixels the value equals MMSeg's. Without
    ``class_weight`` it is ``CrossEntropyLoss`` unchanged.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.use_sigmoid or self.use_mask:
            raise ValueError('ClassWeightedCrossEntropyLoss is the softmax cross-entropy: '
                             'use_sigmoid and use_mask must be False')

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor,
                weight: Optional[torch.Tensor] = None, avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None, ignore_index: int = -100,
                **kwargs) -> torch.Tensor:
        """``cls_score`` (N, C, H, W) logits, ``label`` (N, H, W) class ids or
        ``ignore_index``; returns the loss (a scalar for ``'mean'`` / ``'sum'``)."""
        reduction = reduction_override or self.reduction
        if self.class_weight is not None and reduction == 'mean' and avg_factor is None:
            valid = label[label != ignore_index]
            num_classes = cls_score.shape[1]
            if valid.numel() and (valid.min() < 0 or valid.max() >= num_classes):
                bad = valid[(valid < 0) | (valid >= num_classes)].unique()[:10].tolist()
                raise ValueError(f'segmentation labels {bad} are outside [0, {num_classes}) and '
                                 f'not ignore_index={ignore_index}; check the masks with '
                                 f'CheckSegMask (mmdavpt.utils.compose.strict_pipeline)')
            class_weight = cls_score.new_tensor(self.class_weight)
            avg_factor = class_weight[valid].sum()
        return super().forward(cls_score, label, weight=weight, avg_factor=avg_factor,
                               reduction_override=reduction_override,
                               ignore_index=ignore_index, **kwargs)
