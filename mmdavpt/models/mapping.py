"""The class -> prompt semantic mapping of DA-VPT (paper section 2.4).

C classes are mapped onto the M prompts of a guided layer by k-means over L2-normalised per-class
mean features. The mapping, the centroids and the running class statistics are buffers, so they
are saved in checkpoints, restored on resume and loaded with the model.
"""
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from mmengine import dist
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits
from torch import Tensor, nn


@dataclass
class RemapResult:
    """What one remapping did (for the logs)."""
    kmeans_seconds: float
    moved_fraction: float
    num_seen_classes: int


class SemanticMapping(nn.Module):
    """Class-to-prompt mapping with its running class statistics.

    Args:
        num_classes: C.
        num_prompts: M, the prompts of a guided layer.
        feat_dim: D, the width of the features that are clustered.
        seed: random state of the k-means initialisation (deterministic for a seed).
        n_init: k-means restarts for the first clustering (warm starts use one).
        fixed: keep the placeholder mapping, class c -> prompt c mod M, for the whole run (an
            ablation without the semantic mapping): training needs no ``SemanticMappingHook``,
            and :meth:`remap` refuses. Without it, training before a mapping was computed (or
            loaded) is an error (:meth:`check_trainable`).
        ignore_classes: classes left out of the mapping: their samples are dropped by
            :meth:`accumulate`, so they never take part in the clustering, and their entry of
            ``class_to_prompt`` is a placeholder (the guidance losses leave them out too).

    With at most M mapped classes every mapped class gets its own prompt and no clustering
    happens. Classes never seen (e.g. a head with more classes than the data) keep their
    placeholder prompt and take no part in the k-means.
    """

    def __init__(self, num_classes: int, num_prompts: int, feat_dim: int, seed: int = 0,
                 n_init: int = 4, fixed: bool = False,
                 ignore_classes: Sequence[int] = ()) -> None:
        super().__init__()
        if num_classes <= 0 or num_prompts <= 0:
            raise ValueError(f'num_classes and num_prompts must be > 0, got {num_classes} and '
                             f'{num_prompts}')
        self.num_classes = num_classes
        self.num_prompts = num_prompts
        self.seed = seed
        self.n_init = n_init
        self.fixed = fixed
        self._trainable = False  # check_trainable() passed once
        self.ignore_classes = check_ignore_classes(ignore_classes, num_classes)
        self.register_buffer('class_to_prompt', torch.arange(num_classes) % num_prompts)
        self.register_buffer('centroids', torch.zeros(num_prompts, feat_dim))
        self.register_buffer('class_sum', torch.zeros(num_classes, feat_dim, dtype=torch.float64))
        self.register_buffer('class_count', torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer('num_remaps', torch.zeros((), dtype=torch.long))

    @property
    def initialized(self) -> bool:
        """Whether a mapping was computed (or loaded), rather than the placeholder."""
        return bool(self.num_remaps > 0)

    def check_trainable(self) -> None:
        """Raise unless a mapping was computed or loaded, or ``fixed=True`` asks for the
        placeholder: called by the guidance at every training step. Reading ``num_remaps`` is a
        host sync on a GPU, so a passed check is remembered (a mapping, once computed, stays)."""
        if self._trainable:
            return
        self._trainable = self.fixed or self.initialized
        if not self._trainable:
            raise RuntimeError(
                'DA-VPT guidance is training with the placeholder class->prompt mapping (class c '
                f'-> prompt c % {self.num_prompts}): no class->prompt mapping was computed. Add '
                "dict(type='SemanticMappingHook') to custom_hooks (it builds the mapping before "
                'the first iteration and remaps during training), or set '
                'model.guidance.mapping=dict(fixed=True) to train with the placeholder mapping '
                'on purpose')

    @torch.no_grad()
    def accumulate(self, features: Tensor, labels: Tensor) -> None:
        """Add N x D features of classes ``labels`` (N,) to the running class sums."""
        if features.shape[0] == 0:
            return
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f'labels must lie in [0, {self.num_classes}), got '
                             f'[{int(labels.min())}, {int(labels.max())}]')
        if self.ignore_classes:
            keep = ~self.ignored_mask(labels.device)[labels]
            features, labels = features[keep], labels[keep]
        self.class_sum.index_add_(0, labels, features.detach().to(self.class_sum.dtype))
        self.class_count.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))

    def ignored_mask(self, device: torch.device) -> Tensor:
        """C bool, True for the classes in ``ignore_classes``."""
        mask = torch.zeros(self.num_classes, dtype=torch.bool, device=device)
        mask[list(self.ignore_classes)] = True
        return mask

    def reset_statistics(self) -> None:
        self.class_sum.zero_()
        self.class_count.zero_()

    @torch.no_grad()
    def remap(self) -> RemapResult:
        """Re-cluster the classes seen since the last reset and reset the statistics.

        The statistics are summed over all ranks first, and rank 0's result is broadcast, so
        every rank holds the same mapping. Classes not seen keep their prompt. The k-means starts
        from the previous centroids once a mapping exists.
        """
        if self.fixed:
            raise RuntimeError('this mapping is fixed (model.guidance.mapping.fixed=True): '
                               'remove SemanticMappingHook from custom_hooks, or drop fixed=True')
        dist.all_reduce(self.class_sum)
        dist.all_reduce(self.class_count)
        seen = (self.class_count > 0).nonzero().flatten()
        old = self.class_to_prompt.clone()
        start = time.perf_counter()
        if len(seen) > 0 and dist.get_rank() == 0:
            self._cluster(seen)
        seconds = time.perf_counter() - start
        dist.broadcast(self.class_to_prompt, 0)
        dist.broadcast(self.centroids, 0)
        self.num_remaps += 1
        self.reset_statistics()
        moved = float((old != self.class_to_prompt).float().mean())
        return RemapResult(seconds, moved, len(seen))

    def _cluster(self, seen: Tensor) -> None:
        # scikit-learn clusters on the CPU: the buffers may live on a GPU (results go back there)
        means = (self.class_sum[seen] / self.class_count[seen, None]).cpu()
        feats = torch.nn.functional.normalize(means, dim=1).numpy()
        mapped = [c for c in range(self.num_classes) if c not in self.ignore_classes]
        if len(mapped) <= self.num_prompts:  # a prompt of its own for every mapped class
            self.class_to_prompt[mapped] = torch.arange(len(mapped)).to(self.class_to_prompt)
            rows = [mapped.index(c) for c in seen.tolist()]
            self.centroids[rows] = torch.from_numpy(feats).to(self.centroids)
            return
        warm = self.initialized
        if len(seen) >= self.num_prompts:
            init = self.centroids.double().cpu().numpy() if warm else 'k-means++'
            # C x D is tiny (hundreds of rows): BLAS and OpenMP threads cost more than the
            # arithmetic, 5-8x more on 2 shared cores (k-means++ runs C x D dot products in a
            # loop over the centroids). One thread is never slower at this size.
            with threadpool_limits(1):
                km = KMeans(self.num_prompts, init=init, n_init=1 if warm else self.n_init,
                            random_state=self.seed).fit(feats)
            assign, centroids = km.labels_, km.cluster_centers_
        elif warm:
            # Fewer seen classes than prompts: join each to the nearest existing centroid.
            cents = self.centroids.double().cpu().numpy()
            assign = ((feats[:, None] - cents[None]) ** 2).sum(-1).argmin(1)
            centroids = cents
        else:
            raise ValueError(
                f'only {len(seen)} of {self.num_classes} classes were seen, fewer than the '
                f'{self.num_prompts} guided prompts: cannot build the first mapping; set '
                'num_guided_prompts to at most the number of classes in the training data')
        self.class_to_prompt[seen] = torch.as_tensor(np.asarray(assign)).to(self.class_to_prompt)
        self.centroids.copy_(torch.as_tensor(np.asarray(centroids)))

    def extra_repr(self) -> str:
        ignored = f', ignore_classes={self.ignore_classes}' if self.ignore_classes else ''
        return f'num_classes={self.num_classes}, num_prompts={self.num_prompts}{ignored}' + \
            (', fixed=True' if self.fixed else '')


def check_ignore_classes(ignore_classes: Sequence[int], num_classes: int) -> tuple:
    """``ignore_classes`` as a sorted tuple; raises if a class is outside [0, C) or if no class
    would be left."""
    ignored = tuple(sorted({int(c) for c in ignore_classes}))
    bad = [c for c in ignored if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f'ignore_classes {bad} are not classes of [0, {num_classes})')
    if len(ignored) == num_classes:
        raise ValueError(f'ignore_classes {ignored} leaves none of the {num_classes} classes '
                         'to guide: remove some, or set guidance=None')
    return ignored
