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
        if self.guidance is None:
            losses = super().loss(inputs, data_samples)
            check_finite_losses(losses)
            return losses
        # EncoderDecoder.loss, with the backbone's guidance taps
        outs, taps, final = self.backbone.forward_with_taps(inputs)
        x = self.neck(outs) if self.with_neck else outs
        losses = self._decode_head_forward_train(x, data_samples)
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(x, data_samples))
        num_classes = self.guidance.mapping.num_classes
        image_positive = torch.zeros(len(data_samples), num_classes + 1, dtype=torch.bool,
                                     device=inputs.device)
        image_positive.scatter_(1, patch_labels.where(patch_labels >= 0, num_classes), True)
        losses.update(self.guidance.losses(taps, patch_labels, image_positive[:, :num_classes]))
        check_finite_losses(losses)
        patches, labels = self._labelled_patches(final, patch_labels, prompts=True)
        self.guidance.mapping.accumulate(patches, labels)
        return losses

    def _labelled_patches(self, final: Tensor, patch_labels: Tensor,
                          prompts: bool) -> Tuple[Tensor, Tensor]:
        """The K labelled patch tokens (K x D) of ``final`` (B x L x D, the last layer's output
        of a pass with or without prompts) and their K labels, of B x N ``patch_labels``."""
        patches = final[:, self.backbone.final_num_prefix(prompts):].reshape(-1, final.shape[-1])
        labels = patch_labels.reshape(-1)
        keep = labels >= 0
        return patches[keep], labels[keep]

    @torch.no_grad()
    def mapping_features(self, inputs: Tensor, data_samples: SampleList,
                         prompts: bool = True) -> Tuple[Tensor, Tensor]:
        """Features and labels for the class means: last-layer patch tokens by patch label.

        Args:
            inputs: B x 3 x H x W images (after the data preprocessor).
            data_samples: their B data samples with ``gt_sem_seg``.
            prompts: ``False`` runs the plain pre-trained backbone (the initial mapping).

        Returns:
            K x D features of the K labelled patches and their K labels.
        """
        _, _, final = self.backbone.forward_with_taps(inputs, prompts=prompts)
        return self._labelled_patches(final, self._patch_labels(data_samples, inputs.device),
                                      prompts)
