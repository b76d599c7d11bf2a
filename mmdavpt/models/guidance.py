"""DA-VPT guidance: labels -> prompts -> the two metric losses, and the class statistics.

Neither MMPretrain's ``ImageClassifier`` nor MMSeg's ``EncoderDecoder`` hands labels to the
backbone, so the model glue (``DAVPTImageClassifier``, ``DAVPTEncoderDecoder``) runs the
backbone's :meth:`DAVPTViT.forward_with_taps` and hands its guidance taps to this module.
"""
import dataclasses
import logging
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from mmengine.dist import get_world_size
from mmengine.logging import MessageHub, print_log
from torch import Tensor, nn

from mmdavpt.models.backbones import DAVPTViT, GuidanceTaps
from mmdavpt.models.mapping import SemanticMapping
from mmdavpt.registry import build_model


class PromptGuidance(nn.Module):
    """Owns the semantic mapping and the two loss modules of one DA-VPT model.

    Args:
        backbone: the model's :class:`DAVPTViT` (its guided prompts and width are read).
        num_classes: C.
        loss_xp: config of ``L_ML(x, p)``, e.g. ``dict(type='PatchPromptLoss', loss_weight=0.1)``;
            ``None`` switches it off.
        loss_pcls: config of ``L_ML(p, x_cls)``, e.g. ``dict(type='ClsPromptLoss', ...)``.
        mapping: extra arguments of :class:`SemanticMapping` (``seed``, ``n_init``, ``fixed``).
            Training needs a computed mapping (``SemanticMappingHook``) unless ``fixed=True``.
        ignore_classes: classes left out of the guidance, e.g. ``(0, )`` for a background class
            that dominates the patches: their patches are neither positives nor negatives of
            ``L_ML(x, p)``, they are not CLS positives of ``L_ML(p, x_cls)``, and they are not
            clustered (the other classes share the M prompts). See ``docs/reports/segmentation.md``.

    In a distributed run the losses see the samples of every rank (the global batch): the
    log-sum-exp over a prompt's samples does not split into per-rank terms, so each rank gathers
    the sample features of the taps (differentiably) and the labels of all ranks. With DDP's
    gradient averaging the update equals a single-process step over the global batch.
    """

    def __init__(self, backbone: DAVPTViT, num_classes: int, loss_xp: Optional[dict] = None,
                 loss_pcls: Optional[dict] = None, mapping: Optional[dict] = None,
                 ignore_classes: Sequence[int] = ()) -> None:
        super().__init__()
        if not isinstance(backbone, DAVPTViT):
            raise TypeError(f'DA-VPT guidance needs a DAVPTViT backbone, got '
                            f'{type(backbone).__name__}')
        if not backbone.guided_layers:
            raise ValueError('DA-VPT guidance needs guided prompts: set num_guided_prompts > 0 '
                             'in the backbone, or guidance=None for plain VPT')
        self.loss_xp = build_model(loss_xp) if loss_xp else None
        self.loss_pcls = build_model(loss_pcls) if loss_pcls else None
        self.mapping = SemanticMapping(num_classes, backbone.num_guided_prompts,
                                       backbone.embed_dims, ignore_classes=ignore_classes,
                                       **(mapping or {}))
        if backbone.num_guided_prompts > num_classes:
            print_log(f'DA-VPT: num_guided_prompts={backbone.num_guided_prompts} > '
                      f'{num_classes} classes: class c uses prompt c, and the '
                      f'{backbone.num_guided_prompts - num_classes} extra prompts have no '
                      'positive samples (the metric losses only push them away from all '
                      'samples); set num_guided_prompts <= the number of classes to avoid them',
                      logger='current', level=logging.WARNING)

    @property
    def num_prompts(self) -> int:
        return self.mapping.num_prompts

    def losses(self, taps: Dict[int, GuidanceTaps], patch_labels: Tensor,
               image_positive: Tensor) -> Dict[str, Tensor]:
        """The guidance losses, averaged over the guided layers.

        Args:
            taps: {guided layer: GuidanceTaps} from :meth:`DAVPTViT.forward_with_taps`.
            patch_labels: B x N class of every patch, -1 where ignored.
            image_positive: B x C bool, the classes present in each image.
        """
        if get_world_size() > 1:
            taps = {i: self._gather_taps(t) for i, t in taps.items()}
            patch_labels = gather_batch(patch_labels)
            image_positive = gather_batch(image_positive)
        self.mapping.check_trainable()
        if self.mapping.ignore_classes:
            patch_labels, image_positive = drop_ignored_classes(
                patch_labels, image_positive, self.mapping.ignored_mask(patch_labels.device))
        c2p = self.mapping.class_to_prompt
        patch_prompt = torch.where(patch_labels >= 0, c2p[patch_labels.clamp(min=0)], -1)
        prompt_positive = (image_positive.float() @ F.one_hot(c2p, self.num_prompts).float()) > 0
        losses = {}
        if self.loss_xp is not None:
            losses['loss_ml_xp'] = sum(
                self.loss_xp(t, patch_prompt, prompt_positive) for t in taps.values()) / len(taps)
        if self.loss_pcls is not None:
            losses['loss_ml_pcls'] = sum(
                self.loss_pcls(t, prompt_positive) for t in taps.values()) / len(taps)
        return losses

    def _gather_taps(self, taps: GuidanceTaps) -> GuidanceTaps:
        """The taps with the per-image tensors the losses read gathered from all ranks: the CLS
        query and the one B x N x D tensor that ``loss_xp``'s sample side reads."""
        gathered = dict(cls_query=gather_batch(taps.cls_query))
        if self.loss_xp is not None:
            field = self.loss_xp.sample_tap
            gathered[field] = gather_batch(getattr(taps, field))
        return dataclasses.replace(taps, **gathered)


def drop_ignored_classes(labels: Tensor, image_positive: Tensor,
                         ignored: Tensor) -> Tuple[Tensor, Tensor]:
    """Leave the ignored classes out of the guidance.

    Args:
        labels: B x N class of every patch (or B class of every image), -1 where ignored.
        image_positive: B x C bool, the classes present in each image.
        ignored: C bool, the classes to leave out.

    Returns:
        ``labels`` with -1 for the ignored classes, and ``image_positive`` without them.
    """
    dropped = (labels >= 0) & ignored[labels.clamp(min=0)]
    return labels.masked_fill(dropped, -1), image_positive & ~ignored


def gather_batch(x: Tensor) -> Tensor:
    """Concatenate the B x ... tensors of all ranks along the batch, differentiably.

    The backward pass returns to each rank the gradient of its own slice, summed over the ranks
    (every rank computes the same global loss); DDP's averaging then gives the global gradient.
    Needs the same B on every rank (``DefaultSampler`` pads the last batches to make it so).
    """
    if x.dtype == torch.bool:
        return gather_batch(x.to(torch.uint8)).bool()
    return torch.cat(dist_nn.all_gather(x.contiguous()), dim=0)


def patch_labels_from_mask(mask: Tensor, patch_size: int, num_classes: int,
                           ignore_index: int = 255) -> Tensor:
    """Majority label of each patch of a segmentation mask.

    Args:
        mask: B x H x W (or B x 1 x H x W) integer labels; ``ignore_index`` pixels do not vote.
        patch_size: side of a square patch; the mask is padded with ``ignore_index`` to a
            multiple of it (as the patch embedding pads the image at its bottom-right corner).
        num_classes: C; values outside [0, C) other than ``ignore_index`` raise.

    Returns:
        B x (H / p) x (W / p) long, -1 for patches with no labelled pixel. Ties go to the lower
        class index.
    """
    if mask.ndim == 4:
        mask = mask[:, 0]
    mask = mask.long()
    bad = (mask != ignore_index) & ((mask < 0) | (mask >= num_classes))
    if bad.any():
        values = sorted(set(mask[bad].unique().tolist()))
        raise ValueError(f'segmentation mask has values {values[:10]} outside [0, {num_classes}) '
                         f'that are not the ignore index {ignore_index}')
    B, H, W = mask.shape
    pad_h, pad_w = -H % patch_size, -W % patch_size
    mask = F.pad(mask, (0, pad_w, 0, pad_h), value=ignore_index)
    h, w = mask.shape[1] // patch_size, mask.shape[2] // patch_size
    votes = mask.where(mask != ignore_index, num_classes)  # ignore -> extra bin
    votes = votes.reshape(B, h, patch_size, w, patch_size).permute(0, 1, 3, 2, 4).reshape(
        B * h * w, patch_size * patch_size)
    counts = torch.zeros(B * h * w, num_classes + 1, device=mask.device)
    counts.scatter_add_(1, votes, torch.ones_like(votes, dtype=counts.dtype))
    counts = counts[:, :num_classes]
    labels = counts.argmax(dim=1)
    labels[counts.sum(dim=1) == 0] = -1
    return labels.reshape(B, h, w)


def check_finite_losses(losses: Dict[str, Tensor]) -> None:
    """Stop training on a NaN or infinite loss, naming the loss and the iteration.

    Called before the backward pass, so the weights are never updated with garbage.
    """
    values = [v for k, v in losses.items() if 'loss' in k and isinstance(v, Tensor)]
    if values and not bool(torch.isfinite(torch.stack([v.detach().float().sum()
                                                       for v in values])).all()):
        bad = {k: float(v.detach().float().sum()) for k, v in losses.items()
               if 'loss' in k and isinstance(v, Tensor) and not torch.isfinite(v).all()}
        hub = MessageHub.get_current_instance()
        step = hub.get_info('iter')
        where = f' at iteration {step + 1}' if step is not None else ''
        raise FloatingPointError(f'non-finite loss{where}: {bad}; training stopped before the '
                                 'optimiser step (check the learning rate, --amp, the data)')
