"""The one class per image that the DA-VPT guidance and the class means use.

MMPretrain's batch augmentations (``Mixup``, ``CutMix``, ... in
``data_preprocessor=dict(batch_augments=...)``) mix two images and put the mixed one-hot labels
in each sample's ``gt_score`` (B x C, rows summing to 1), leaving ``gt_label`` as the label of
the image that was mixed *into*, which may cover less than half of the result. The head's loss
uses the soft ``gt_score``; the guidance needs one class per image (every patch of an image takes
it, and it picks the class mean the image's features go to). The choice made here: the
**dominant class**, ``argmax(gt_score)`` (ties at a mixing ratio of exactly 0.5 go to the lower
class index). It is logged once, at the first mixed batch.
"""
import logging
from typing import List

import torch
from mmengine.logging import print_log
from mmpretrain.structures import DataSample
from torch import Tensor


class GuidanceLabels:
    """Callable: data samples -> B long labels, the dominant class of a mixed sample."""

    def __init__(self) -> None:
        self._told = False

    def __call__(self, data_samples: List[DataSample], device: torch.device) -> Tensor:
        if not all('gt_score' in ds for ds in data_samples):
            return torch.cat([ds.gt_label for ds in data_samples]).to(device)
        scores = torch.stack([ds.gt_score for ds in data_samples]).to(device)  # B x C
        if not self._told and bool((scores.amax(dim=1) < 1).any()):
            self._told = True
            print_log('DA-VPT: the training batches mix images (gt_score from batch_augments '
                      'such as Mixup/CutMix): the guidance losses and the class means use each '
                      "image's dominant class, argmax(gt_score); the head's loss uses the soft "
                      'gt_score (logged once)', logger='current', level=logging.WARNING)
        return scores.argmax(dim=1)
