"""The proxy-anchor prompt metric loss of DA-VPT (paper Eq. 4), in both directions.

``L_ML(x, p)`` (:class:`PatchPromptLoss`) pulls each guided prompt towards the samples of the
classes mapped to it and pushes it from the others; ``L_ML(p, x_cls)`` (:class:`ClsPromptLoss`)
does the same with the CLS token as the sample. Both take the taps of a guided layer
(:class:`~mmdavpt.models.backbones.GuidanceTaps`) that
:meth:`~mmdavpt.models.backbones.DAVPTViT.forward_with_taps` returns.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmdavpt.models.backbones import GuidanceTaps
from mmdavpt.registry import register_model

#: How the positive term of :func:`prompt_anchor_loss` is averaged: ``'present'`` over the
#: prompts with a positive sample in the batch (paper Eq. 4), ``'all'`` over all M prompts (the
#: official code, ``models/criterion.py``: ``pos_s.mean()`` with the empty prompts set to 0).
POSITIVE_NORMS = ('present', 'all')


# float32 also inside an autocast region, which would run the similarity products below in
# float16 / bfloat16 (the taps come from an autocast forward under --amp)
@torch.autocast('cuda', enabled=False)
@torch.autocast('cpu', enabled=False)
def prompt_anchor_loss(samples: Tensor, prompts: Tensor, positive: Tensor, margin: float = 0.1,
                       temperature: float = 1 / 32, valid: Optional[Tensor] = None,
                       positive_norm: str = 'present') -> Tensor:
    """Proxy-anchor loss with prompts as proxies (paper Eq. 4).

    With ``s`` the cosine similarity of L2-normalised vectors::

        L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X+_p} exp(-(s(p,x) - margin) / temperature))
          + 1/|P|  sum_{p in P}  log(1 + sum_{x in X-_p} exp( (s(p,x) + margin) / temperature))

    (``positive_norm='all'`` divides the first sum by ``|P|`` instead of ``|P+|``.)

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
        positive_norm: ``'present'`` (paper): the positive term is averaged over the prompts
            with at least one positive sample; ``'all'`` (official code): over all M prompts, so
            a batch in which few prompts have positives weighs the positive term less.

    Returns:
        A scalar tensor, computed in float32 whatever the input dtype.
    """
    if samples.ndim not in (2, 3) or prompts.ndim != 2 or samples.shape[-1] != prompts.shape[1]:
        raise ValueError(f'samples N x D (or B x N x D) and prompts M x D expected, got '
                         f'{tuple(samples.shape)} and {tuple(prompts.shape)}')
    if positive_norm not in POSITIVE_NORMS:
        raise ValueError(f'positive_norm must be one of {POSITIVE_NORMS}, got {positive_norm!r}')
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
    # A prompt without positives has pos_lse = log(1 + 0) = 0 in both normalisations.
    if positive_norm == 'all':
        pos_term = pos_lse.mean()
    else:
        pos_term = pos_lse.sum() / positive.any(dim=0).sum().clamp(min=1)
    return pos_term + neg_lse.mean()


class _PromptMetricLoss(nn.Module):
    """Shared options of the two directions of the prompt metric loss."""

    #: prompt_side -> the :class:`GuidanceTaps` field it reads (M x D).
    PROMPT_TAPS = {'query': 'prompt_query', 'raw': 'prompt_raw'}

    def __init__(self, loss_weight: float, margin: float = 0.1, temperature: float = 1 / 32,
                 prompt_side: str = 'query', positive_norm: str = 'present') -> None:
        super().__init__()
        if prompt_side not in self.PROMPT_TAPS:
            raise ValueError(f'prompt_side of {type(self).__name__} must be one of '
                             f'{tuple(self.PROMPT_TAPS)}, got {prompt_side!r}')
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        if positive_norm not in POSITIVE_NORMS:
            raise ValueError(f'positive_norm must be one of {POSITIVE_NORMS}, got '
                             f'{positive_norm!r}')
        self.loss_weight = loss_weight
        self.margin = margin
        self.temperature = temperature
        self.prompt_side = prompt_side
        self.positive_norm = positive_norm

    def _prompts(self, taps: GuidanceTaps) -> Tensor:
        return getattr(taps, self.PROMPT_TAPS[self.prompt_side])

    def _loss(self, samples: Tensor, prompts: Tensor, positive: Tensor,
              valid: Optional[Tensor] = None) -> Tensor:
        return self.loss_weight * prompt_anchor_loss(samples, prompts, positive, self.margin,
                                                     self.temperature, valid,
                                                     self.positive_norm)


@register_model
class PatchPromptLoss(_PromptMetricLoss):
    """``beta * L_ML(x, p)``: image-side samples against the guided prompts.

    Args:
        loss_weight: beta of the paper.
        sample_side: ``'mhsa'`` (paper, default): every patch's MHSA output, the heads'
            outputs concatenated before the output projection W_O (paper section 2.1), is a
            sample labelled with its patch label; ``'mhsa_proj'``: the same after W_O (what
            ``'mhsa'`` meant before the paper's reading was adopted); ``'mhsa_mean'``,
            ``'mhsa_proj_mean'``: one sample per image, the mean of those over its patches;
            ``'block_input_mean'``: the mean of the block's input patch tokens, what the
            official code does.
        margin, temperature, positive_norm: see :func:`prompt_anchor_loss`
            (``positive_norm='all'``: the official code's normalisation).
        prompt_side: ``'query'`` (paper, default) or ``'raw'``: the prompt parameters instead
            of their query projection (official code).
        detach_samples: stop the loss's gradient at the samples, so that it moves only the
            guided prompts (through their side of the similarity), not the patch features of
            the guided layer nor, through them, the prompts of the earlier layers.
    """

    #: sample_side -> (the :class:`GuidanceTaps` field it reads, B x N x D; whether the
    #: samples are the per-image means of it instead of every patch).
    SAMPLE_TAPS = {'mhsa': ('patch_mhsa', False), 'mhsa_proj': ('patch_mhsa_proj', False),
                   'mhsa_mean': ('patch_mhsa', True), 'mhsa_proj_mean': ('patch_mhsa_proj', True),
                   'block_input_mean': ('block_input', True)}

    def __init__(self, loss_weight: float = 0.1, sample_side: str = 'mhsa',
                 detach_samples: bool = False, **kwargs) -> None:
        super().__init__(loss_weight, **kwargs)
        if sample_side not in self.SAMPLE_TAPS:
            raise ValueError(f'sample_side must be one of {tuple(self.SAMPLE_TAPS)}, got '
                             f'{sample_side!r}')
        self.sample_side = sample_side
        self.detach_samples = detach_samples

    @property
    def sample_tap(self) -> str:
        """The :class:`GuidanceTaps` field (B x N x D) the samples are read from."""
        return self.SAMPLE_TAPS[self.sample_side][0]

    def forward(self, taps: GuidanceTaps, patch_prompt: Tensor,
                image_positive: Optional[Tensor] = None) -> Tensor:
        """Args:
            taps: the guided layer's taps.
            patch_prompt: B x N long, the prompt of each patch's class, -1 for ignored patches.
            image_positive: B x M bool, the prompts of the classes present in each image (used by
                the pooled sample sides); derived from ``patch_prompt`` when not given.
        """
        num_prompts = taps.prompt_query.shape[0]
        source = self._samples(getattr(taps, self.sample_tap))
        if not self.SAMPLE_TAPS[self.sample_side][1]:
            # Every patch is a sample, read in place; ignored patches (-1) are masked, not
            # gathered: nothing is copied and no shape depends on the labels (no GPU sync).
            keep = patch_prompt >= 0  # B x N
            positive = F.one_hot(patch_prompt.clamp(min=0), num_prompts).bool() & keep[..., None]
            return self._loss(source, self._prompts(taps), positive, keep)
        positive = image_positive if image_positive is not None else prompts_present(
            patch_prompt, num_prompts)
        return self._loss(source.mean(dim=1), self._prompts(taps), positive)

    def _samples(self, samples: Tensor) -> Tensor:
        return samples.detach() if self.detach_samples else samples


@register_model
class ClsPromptLoss(_PromptMetricLoss):
    """``lambda * L_ML(p, x_cls)``: the CLS token's query against the guided prompts.

    Args:
        loss_weight: lambda of the paper.
        prompt_side: ``'query'`` (paper, default) or ``'raw'`` (official code).
        margin, temperature, positive_norm: see :class:`PatchPromptLoss`.
    """

    def __init__(self, loss_weight: float = 0.1, **kwargs) -> None:
        super().__init__(loss_weight, **kwargs)

    def forward(self, taps: GuidanceTaps, image_positive: Tensor) -> Tensor:
        """Args:
            taps: the guided layer's taps.
            image_positive: B x M bool, the prompts of the classes of each image.
        """
        return self._loss(taps.cls_query, self._prompts(taps), image_positive)


def prompts_present(patch_prompt: Tensor, num_prompts: int) -> Tensor:
    """B x N prompt indices (-1 ignored) -> B x M bool, which prompts occur in each image."""
    present = patch_prompt.new_zeros(patch_prompt.shape[0], num_prompts + 1, dtype=torch.bool)
    present.scatter_(1, torch.where(patch_prompt < 0, num_prompts, patch_prompt), True)
    return present[:, :num_prompts]
