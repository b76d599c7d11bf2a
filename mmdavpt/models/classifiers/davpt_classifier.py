"""MMPretrain ``ImageClassifier`` that adds the DA-VPT guidance losses."""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models import ImageClassifier
from mmpretrain.structures import DataSample
from torch import Tensor

from mmdavpt.models.classifiers.labels import GuidanceLabels
from mmdavpt.models.guidance import PromptGuidance, check_finite_losses
from mmdavpt.registry import register_model


@register_model
class DAVPTImageClassifier(ImageClassifier):
    """``ImageClassifier`` with a :class:`DAVPTViT` backbone and DA-VPT guidance.

    Args:
        guidance: ``dict(loss_xp=..., loss_pcls=..., mapping=...)`` (see
            :class:`PromptGuidance`), or ``None`` for plain VPT / linear probing / bias tuning.
        Other arguments are those of ``ImageClassifier``.

    Every patch takes its image's label; the loss dict gains ``loss_ml_xp`` and ``loss_ml_pcls``,
    and the head's cross-entropy is renamed ``loss`` -> ``loss_cls``: MMEngine logs the total of
    all ``loss*`` terms as ``loss``, which a term named ``loss`` would overwrite in the log.
    The final CLS features of the training pass feed the class means of the next remapping.
    An image mixed by Mixup/CutMix takes its dominant class
    (:mod:`mmdavpt.models.classifiers.labels`).
    """

    def __init__(self, *args, guidance: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.guidance = None
        if guidance is not None:
            self.guidance = PromptGuidance(self.backbone, self.head.num_classes, **guidance)
        self._labels = GuidanceLabels()

    def loss(self, inputs: Tensor, data_samples: List[DataSample]) -> dict:
        if self.guidance is None:
            losses = super().loss(inputs, data_samples)
            check_finite_losses(losses)
            return losses
        # ImageClassifier.loss, with the backbone's guidance taps
        outs, taps, final = self.backbone.forward_with_taps(inputs)
        losses = self.head.loss(self.neck(outs) if self.with_neck else outs, data_samples)
        if 'loss' in losses:
            losses['loss_cls'] = losses.pop('loss')
        labels = self._labels(data_samples, inputs.device)
        num_patches = next(iter(taps.values())).patch_mhsa.shape[1]
        image_positive = F.one_hot(labels, self.guidance.mapping.num_classes).bool()
        losses.update(self.guidance.losses(taps, labels[:, None].expand(-1, num_patches),
                                           image_positive))
        check_finite_losses(losses)
        self.guidance.mapping.accumulate(final[:, 0], labels)
        return losses

    @torch.no_grad()
    def mapping_features(self, inputs: Tensor, data_samples: List[DataSample],
                         prompts: bool = True) -> Tuple[Tensor, Tensor]:
        """Features and labels for the class means: the final CLS token of each image.

        Args:
            inputs: B x 3 x H x W images (after the data preprocessor).
            data_samples: their B data samples with ``gt_label``.
            prompts: ``False`` runs the plain pre-trained backbone (the initial mapping).

        Returns:
            B x D features and their B labels.
        """
        _, _, final = self.backbone.forward_with_taps(inputs, prompts=prompts)
        return final[:, 0], self._labels(data_samples, inputs.device)
