"""MMSeg ``EncoderDecoder`` that adds the DA-VPT guidance losses."""
from typing import Optional, Tuple

import torch
from mmseg.models import EncoderDecoder
from mmseg.utils import SampleList
from torch import Tensor

from mmdavpt.models.guidance import PromptGuidance, check_finite_losses, patch_labels_from_mask
from mmdavpt.registry import register_model


@register_model
class DAVPTEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` with a :class:`DAVPTViT` backbone and DA-VPT guidance.

    Args:
        guidance: ``dict(loss_xp=..., loss_pcls=..., mapping=...)`` (see
            :class:`PromptGuidance`), or ``None``.
        Other arguments are those of ``EncoderDecoder``.

    Each patch takes the majority label of its ground-truth pixels (the decode head's
    ``ignore_index`` does not vote; a patch with no labelled pixel is ignored). The CLS positives
    are the prompts of the classes present in the image. The last layer's patch features feed the
    class means of the next remapping.
    """

    def __init__(self, *args, guidance: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.guidance = None
        if guidance is not None:
            self.guidance = PromptGuidance(self.backbone, self.num_classes, **guidance)

    def _patch_labels(self, data_samples: SampleList, device: torch.device) -> Tensor:
        masks = torch.stack([ds.gt_sem_seg.data for ds in data_samples]).to(device)
        labels = patch_labels_from_mask(masks, self.backbone.patch_size, self.num_classes,
                                        self.decode_head.ignore_index)
        return labels.flatten(1)  # B x N

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        # first: it raises on mask values outside the classes, which the decode head's
        # cross-entropy reports as an index error (a device-side assert on GPU)
        patch_labels = self._patch_labels(data_samples, inputs.device)
        losses = super().loss(inputs, data_samples)
        if self.guidance is None:
            check_finite_losses(losses)
            return losses
        taps, final = self.backbone.pop_taps()
        num_classes = self.guidance.mapping.num_classes
        image_positive = torch.zeros(len(data_samples), num_classes + 1, dtype=torch.bool,
                                     device=inputs.device)
        image_positive.scatter_(1, patch_labels.where(patch_labels >= 0, num_classes), True)
        losses.update(self.guidance.losses(taps, patch_labels, image_positive[:, :num_classes]))
        check_finite_losses(losses)
        self._accumulate(final, patch_labels)
        return losses

    def _accumulate(self, final: Tensor, patch_labels: Tensor) -> None:
        patches = final[:, self.backbone.final_num_prefix:].reshape(-1, final.shape[-1])
        labels = patch_labels.reshape(-1)
        keep = labels >= 0
        self.guidance.mapping.accumulate(patches[keep], labels[keep])

    @torch.no_grad()
    def mapping_features(self, inputs: Tensor,
                         data_samples: SampleList) -> Tuple[Tensor, Tensor]:
        """Features and labels for the class means: last-layer patch tokens by patch label."""
        with self.backbone.record():
            self.backbone(inputs)
        _, final = self.backbone.pop_taps()
        patch_labels = self._patch_labels(data_samples, inputs.device).reshape(-1)
        patches = final[:, self.backbone.final_num_prefix:].reshape(-1, final.shape[-1])
        keep = patch_labels >= 0
        return patches[keep], patch_labels[keep]
