"""The proxy-anchor prompt metric loss of DA-VPT (paper Eq. 4), in both directions.

``L_ML(x, p)`` (:class:`PatchPromptLoss`) pulls each guided prompt towards the samples of the
classes mapped to it and pushes it from the others; ``L_ML(p, x_cls)`` (:class:`ClsPromptLoss`)
does the same with the CLS token as the sample. Both take the tensors recorded by
:class:`~mmdavpt.models.backbones.DAVPTViT` at a guided layer (:class:`GuidanceTaps`).
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmdavpt.registry import register_model


@dataclass
class GuidanceTaps:
    """What one guided layer records during a training forward pass.

    Shapes: B images, N patch tokens, M guided prompts, D channels.

    Attributes:
        prompt_query: M x D, the prompts' query projection ``LN(p) W_Q + b_Q``.
        prompt_raw: M x D, the prompt parameters as inserted (after prompt dropout).
        cls_query: B x D, the CLS token's query projection.
        patch_mhsa: B x N x D, the multi-head self-attention output of the patch tokens
            (after the output projection, before LayerScale and the residual).
        block_input: B x N x D, the block's input patch tokens (the official code's samples).
    """
    prompt_query: Tensor
    prompt_raw: Tensor
    cls_query: Tensor
    patch_mhsa: Tensor
    block_input: Tensor


# float32 also inside an autocast region, which would run the similarity products below in
# float16 / bfloat16 (the taps come from an autocast forward under --amp)
@torch.autocast('cuda', enabled=False)
@torch.autocast('cpu', enabled=False)
def prompt_anchor_loss(samples: Tensor, prompts: Tensor, positive: Tensor, margin: float = 0.1,
                       temperature: float = 1 / 32, valid: Optional[Tensor] = None) -> Tensor:
    """Proxy-anchor loss with prompts as proxies (paper Eq. 4).

    With ``s`` the cosine similarity of L2-normalised vectors::

        L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X+_p} exp(-(s(p,x) - margin) / temperature))
          + 1/|P|  sum_{p in P}  log(1 + sum_{x in X-_p} exp( (s(p,x) + margin) / temperature))

    Args:
        samples: N x D sample features, or B x N x D; a strided view (the patch slice of a
            layer's tokens) is read in place, no copy of the samples is made.
        prompts: M x D prompt (proxy) features.
        positive: N x M (B x N x M) bool, ``positive[i, k]`` when sample i belongs to a class of
            prompt k.
        margin: delta of the paper.
        temperature: tau of the paper (the official code's alpha is 1 / tau).
        valid: N (B x N) bool, the samples that take part; the others (ignored patches) are in
            neither X+ nor X-. ``None``: all of them.

    Returns:
        A scalar tensor, computed in float32 whatever the input dtype.
    """
    if samples.ndim not in (2, 3) or prompts.ndim != 2 or samples.shape[-1] != prompts.shape[1]:
        raise ValueError(f'samples N x D (or B x N x D) and prompts M x D expected, got '
                         f'{tuple(samples.shape)} and {tuple(prompts.shape)}')
    if positive.shape != (*samples.shape[:-1], prompts.shape[0]):
        raise ValueError(f'positive must be {tuple(samples.shape[:-1]) + (prompts.shape[0], )}, '
                         f'got {tuple(positive.shape)}')
    num_prompts = prompts.shape[0]
    samples = samples.float()
    unit_prompts = F.normalize(prompts.float(), dim=1)
    # s(p, x) = (x . p) / |x| with p of unit norm: no normalised copy of the samples is saved.
    if samples.ndim == 3:  # bmm reads a strided B x N x D view in place (matmul would copy it)
        dots = torch.bmm(samples, unit_prompts.t().expand(samples.shape[0], -1, -1))
    else:
        dots = samples @ unit_prompts.t()
    sim = (dots / samples.norm(dim=-1, keepdim=True).clamp(min=1e-12)).reshape(-1, num_prompts)
    positive = positive.reshape(-1, num_prompts).bool()
    not_negative = positive if valid is None else positive | ~valid.reshape(-1, 1).bool()
    pos_logits = (margin - sim) / temperature
    neg_logits = (sim + margin) / temperature
    # log(1 + sum exp(a)) = logsumexp([0, a...]); masked entries contribute exp(-inf) = 0.
    zero_row = sim.new_zeros(1, num_prompts)
    pos_lse = torch.logsumexp(
        torch.cat([zero_row, pos_logits.masked_fill(~positive, float('-inf'))]), dim=0)
    neg_lse = torch.logsumexp(
        torch.cat([zero_row, neg_logits.masked_fill(not_negative, float('-inf'))]), dim=0)
    has_pos = positive.any(dim=0)
    pos_term = (pos_lse * has_pos).sum() / has_pos.sum().clamp(min=1)
    return pos_term + neg_lse.mean()


class _PromptMetricLoss(nn.Module):
    """Shared options of the two directions of the prompt metric loss."""

    PROMPT_SIDES = ('query', 'raw')

    def __init__(self, loss_weight: float, margin: float = 0.1, temperature: float = 1 / 32,
                 prompt_side: str = 'query') -> None:
        super().__init__()
        if prompt_side not in self.PROMPT_SIDES:
            raise ValueError(f'prompt_side must be one of {self.PROMPT_SIDES}, got {prompt_side!r}')
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        self.loss_weight = loss_weight
        self.margin = margin
        self.temperature = temperature
        self.prompt_side = prompt_side

    def _prompts(self, taps: GuidanceTaps) -> Tensor:
        return taps.prompt_query if self.prompt_side == 'query' else taps.prompt_raw

    def _loss(self, samples: Tensor, prompts: Tensor, positive: Tensor,
              valid: Optional[Tensor] = None) -> Tensor:
        return self.loss_weight * prompt_anchor_loss(samples, prompts, positive, self.margin,
                                                     self.temperature, valid)


@register_model
class PatchPromptLoss(_PromptMetricLoss):
    """``beta * L_ML(x, p)``: image-side samples against the guided prompts.

    Args:
        loss_weight: beta of the paper.
        sample_side: ``'mhsa'`` (paper, default): every patch's MHSA output is a sample labelled
            with its patch label; ``'mhsa_mean'``: one sample per image, the mean MHSA output of its
            patches; ``'block_input_mean'``: the mean of the block's input patch tokens, what the
            official code does.
        margin, temperature, prompt_side: see :func:`prompt_anchor_loss`; ``prompt_side='raw'``
            uses the prompt parameters instead of their query projection (official code).
    """

    SAMPLE_SIDES = ('mhsa', 'mhsa_mean', 'block_input_mean')

    def __init__(self, loss_weight: float = 0.1, sample_side: str = 'mhsa', **kwargs) -> None:
        super().__init__(loss_weight, **kwargs)
        if sample_side not in self.SAMPLE_SIDES:
            raise ValueError(f'sample_side must be one of {self.SAMPLE_SIDES}, got {sample_side!r}')
        self.sample_side = sample_side

    def forward(self, taps: GuidanceTaps, patch_prompt: Tensor,
                image_positive: Optional[Tensor] = None) -> Tensor:
        """Args:
            taps: the guided layer's recordings.
            patch_prompt: B x N long, the prompt of each patch's class, -1 for ignored patches.
            image_positive: B x M bool, the prompts of the classes present in each image (used by
                the pooled sample sides); derived from ``patch_prompt`` when not given.
        """
        num_prompts = taps.prompt_query.shape[0]
        if self.sample_side == 'mhsa':
            # Every patch is a sample, read in place; ignored patches (-1) are masked, not
            # gathered: nothing is copied and no shape depends on the labels (no GPU sync).
            keep = patch_prompt >= 0  # B x N
            positive = F.one_hot(patch_prompt.clamp(min=0), num_prompts).bool() & keep[..., None]
            return self._loss(taps.patch_mhsa, self._prompts(taps), positive, keep)
        source = taps.patch_mhsa if self.sample_side == 'mhsa_mean' else taps.block_input
        positive = image_positive if image_positive is not None else prompts_present(
            patch_prompt, num_prompts)
        return self._loss(source.mean(dim=1), self._prompts(taps), positive)


@register_model
class ClsPromptLoss(_PromptMetricLoss):
    """``lambda * L_ML(p, x_cls)``: the CLS token's query against the guided prompts.

    Args:
        loss_weight: lambda of the paper.
        margin, temperature, prompt_side: see :class:`PatchPromptLoss`.
    """

    def __init__(self, loss_weight: float = 0.1, **kwargs) -> None:
        super().__init__(loss_weight, **kwargs)

    def forward(self, taps: GuidanceTaps, image_positive: Tensor) -> Tensor:
        """Args:
            taps: the guided layer's recordings.
            image_positive: B x M bool, the prompts of the classes of each image.
        """
        return self._loss(taps.cls_query, self._prompts(taps), image_positive)


def prompts_present(patch_prompt: Tensor, num_prompts: int) -> Tensor:
    """B x N prompt indices (-1 ignored) -> B x M bool, which prompts occur in each image."""
    present = patch_prompt.new_zeros(patch_prompt.shape[0], num_prompts + 1, dtype=torch.bool)
    present.scatter_(1, torch.where(patch_prompt < 0, num_prompts, patch_prompt), True)
    return present[:, :num_prompts]
