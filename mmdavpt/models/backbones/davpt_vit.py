"""DAVPTViT: a frozen Vision Transformer with deep visual prompts and DA-VPT guidance taps.

The ViT is MMPretrain's :class:`~mmpretrain.models.VisionTransformer` (same modules, same state
dict layout); this class adds, per layer, learnable prompt tokens between the CLS token and the
patch tokens (VPT, paper section 2.1), returns what the prompt metric losses need at the guided
layers (:class:`GuidanceTaps`, section 2.2-2.3) from :meth:`DAVPTViT.forward_with_taps`, and
optionally tunes attention biases and the CLS token (DA-VPT+, section 2.5). Attention always goes
through ``F.scaled_dot_product_attention``: no attention map is ever materialised.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.logging import MMLogger
from mmpretrain.models import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed, to_2tuple
from torch import Tensor, nn

from mmdavpt.models.backbones.args import int_list, name_tuple, pretrained_checkpoint
from mmdavpt.models.backbones.tuned_only import load_tuned_only
from mmdavpt.registry import register_model

#: Bias groups that ``bias_tuning`` can unfreeze. 'q', 'k', 'v' are slices of the fused qkv
#: projection and are tuned through separate zero-initialised offsets, so the other slices
#: cannot move (not even through weight decay).
BIAS_GROUPS = ('q', 'k', 'v', 'proj', 'fc1', 'fc2', 'norm')


@dataclass
class GuidanceTaps:
    """The taps of one guided layer: what the prompt metric losses read of its forward pass.

    All are slices of tensors the forward pass computes anyway (no copy). Shapes: B images,
    N patch tokens, M guided prompts (0 when the pass ran without prompts), D channels.

    Attributes:
        prompt_query: M x D, the prompts' query projection ``LN(p) W_Q + b_Q``.
        prompt_raw: M x D, the prompt parameters as inserted (after prompt dropout).
        cls_query: B x D, the CLS token's query projection.
        patch_mhsa: B x N x D, the multi-head self-attention output of the patch tokens as the
            paper defines it (section 2.1): the heads' outputs concatenated, BEFORE the output
            projection W_O (the official code's ``attn_out``).
        patch_mhsa_proj: B x N x D, the same after the output projection W_O (before
            LayerScale and the residual).
        block_input: B x N x D, the block's input patch tokens (the official code's samples).
    """
    prompt_query: Tensor
    prompt_raw: Tensor
    cls_query: Tensor
    patch_mhsa: Tensor
    patch_mhsa_proj: Tensor
    block_input: Tensor


@register_model
class DAVPTViT(VisionTransformer):
    """Vision Transformer with VPT prompts and DA-VPT guidance.

    Args:
        arch: an MMPretrain ViT arch name (``'b'``: ViT-B, ``'l'``: ViT-L, ``'dinov2-s'``: the
            DINOv2 ViT-S, which also needs ``patch_size=14, layer_scale_init_value=1e-5``), or a
            dict.
        img_size: input size the position embedding is laid out for.
        patch_size: patch size; ``None`` takes a dict arch's ``patch_size``, else 16.
        layer_scale_init_value: ``None`` takes a dict arch's ``layer_scale_init_value``, else 0.
        out_type: ``'cls_token'`` (B x D, as MMPretrain's ViT), ``'featmap'`` (B x D x H x W
            per ``out_indices``, CLS and prompts removed, as MMSeg's ViT), ``'avg_featmap'``,
            or ``'raw'`` (B x L x D with CLS and prompts).
        num_prompts: prompts per unguided layer (VPT-Deep), or in the input (VPT-Shallow).
        guided_layers: indices of the layers whose prompts are guided (negative from the end).
        num_guided_prompts: M, the prompts of each guided layer; the classes are mapped onto them.
        prompt_mode: ``'deep'`` (new prompts at every layer) or ``'shallow'`` (input only).
        prompt_dropout: dropout on the prompt tokens.
        bias_tuning: bias groups to tune, a subset of ``BIAS_GROUPS``; ``('k', 'v')`` is DA-VPT+.
        train_cls_token: tune the CLS token too.
        with_cp: activation checkpointing of the unguided layers while training.
        allow_random_backbone: let :meth:`init_weights` (called by the Runner before training)
            keep a randomly initialised frozen backbone when ``init_cfg`` is not
            ``dict(type='Pretrained', checkpoint=...)``; without it that is an error, since
            prompts tuned on a random frozen ViT are almost never wanted. For tests, and for runs
            whose frozen weights come from a full checkpoint (``load_from``/``resume``).
        Other arguments are those of MMPretrain's ``VisionTransformer``.

    All parameters except the prompts, the tuned biases and (optionally) the CLS token are frozen,
    and the frozen modules stay in eval mode while training (no dropout, no drop-path).
    """

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: Optional[int] = None,
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_type: str = 'cls_token',
                 layer_scale_init_value: Optional[float] = None,
                 num_prompts: int = 10,
                 guided_layers: Union[int, Sequence[int]] = (-1, ),
                 num_guided_prompts: int = 10,
                 prompt_mode: str = 'deep',
                 prompt_dropout: float = 0.,
                 bias_tuning: Union[str, Sequence[str]] = (),
                 train_cls_token: bool = False,
                 with_cp: bool = False,
                 allow_random_backbone: bool = False,
                 **kwargs) -> None:
        settings = self.arch_zoo[arch.lower()] if isinstance(arch, str) and \
            arch.lower() in self.arch_zoo else (arch if isinstance(arch, dict) else {})
        if patch_size is None:
            patch_size = settings.get('patch_size', 16)
        if layer_scale_init_value is None:
            layer_scale_init_value = settings.get('layer_scale_init_value', 0.)
        super().__init__(arch=arch, img_size=img_size, patch_size=patch_size,
                         out_indices=int_list(out_indices, 'out_indices'), out_type=out_type,
                         layer_scale_init_value=layer_scale_init_value, **kwargs)
        self.patch_size = patch_size
        self.with_cp = with_cp

        # ---- prompts ------------------------------------------------------------------------
        if prompt_mode not in ('deep', 'shallow'):
            raise ValueError(f"prompt_mode must be 'deep' or 'shallow', got {prompt_mode!r}")
        if num_prompts < 0 or num_guided_prompts < 0:
            raise ValueError(f'prompt counts must be >= 0, got num_prompts={num_prompts}, '
                             f'num_guided_prompts={num_guided_prompts}')
        self.prompt_mode = prompt_mode
        self.guided_layers = self._check_layer_indices(int_list(guided_layers, 'guided_layers'),
                                                       'guided_layers')
        if num_guided_prompts == 0:
            self.guided_layers = []
        if prompt_mode == 'shallow' and self.guided_layers:
            raise ValueError("DA-VPT guidance needs prompt_mode='deep' (VPT-Shallow has prompts "
                             'in the input only); set num_guided_prompts=0 for VPT-Shallow')
        self.num_prompts = num_prompts
        self.num_guided_prompts = num_guided_prompts if self.guided_layers else 0
        if prompt_mode == 'deep':
            counts = [self.num_guided_prompts if i in self.guided_layers else num_prompts
                      for i in range(self.num_layers)]
        else:
            counts = [num_prompts] + [0] * (self.num_layers - 1)
        self.prompt_counts = counts
        # VPT initialisation: uniform in +-sqrt(6 / (3 * patch_area + D)), Xavier-style with the
        # prompt seen as a patch embedding's output (KMnP/vpt).
        patch_h, patch_w = to_2tuple(patch_size)
        bound = math.sqrt(6. / float(3 * patch_h * patch_w + self.embed_dims))
        self.prompts = nn.ParameterList([
            nn.Parameter(torch.empty(n, self.embed_dims).uniform_(-bound, bound)) for n in counts
        ])
        self.prompt_dropout = nn.Dropout(prompt_dropout)

        # ---- what is tuned ---------------------------------------------------------------------
        self.bias_tuning = name_tuple(bias_tuning, 'bias_tuning', BIAS_GROUPS)
        self.train_cls_token = train_cls_token
        self.requires_grad_(False)
        for prompt in self.prompts:  # empty prompt sets never get a gradient (DDP would hang)
            prompt.requires_grad_(prompt.numel() > 0)
        if train_cls_token:
            self.cls_token.requires_grad_(True)
        for layer in self.layers:
            for name in ('q', 'k', 'v'):
                if name in self.bias_tuning:
                    layer.attn.register_parameter(f'{name}_bias_delta',
                                                  nn.Parameter(torch.zeros(self.embed_dims)))
            for name, module in (('proj', layer.attn.proj), ('fc1', layer.ffn.layers[0][0]),
                                 ('fc2', layer.ffn.layers[1]), ('norm', layer.ln1),
                                 ('norm', layer.ln2)):
                if name in self.bias_tuning and module.bias is not None:
                    module.bias.requires_grad_(True)
        if 'norm' in self.bias_tuning and self.final_norm:
            self.ln1.bias.requires_grad_(True)

        self.allow_random_backbone = allow_random_backbone
        self._pretrained_loaded = False
        self._register_load_state_dict_pre_hook(self._fill_frozen_from_pretrained)

    # ------------------------------------------------------------------------------------------
    def _check_layer_indices(self, indices: Sequence[int], name: str) -> List[int]:
        out = []
        for i in indices:
            j = i + self.num_layers if i < 0 else i
            if not 0 <= j < self.num_layers:
                raise ValueError(f'{name} index {i} is out of range for a ViT with '
                                 f'{self.num_layers} layers')
            out.append(j)
        return sorted(set(out))

    def train(self, mode: bool = True) -> 'DAVPTViT':
        """Frozen modules stay in eval mode; only the prompt dropout follows ``mode``."""
        super().train(mode)
        for module in self.children():
            module.train(False)
        self.prompt_dropout.train(mode)
        return self

    def final_num_prefix(self, prompts: bool = True) -> int:
        """CLS + prompts in front of the patch tokens of the last layer's output, for a pass
        with or without prompts (``forward_with_taps(x, prompts=...)``)."""
        if not prompts:
            return 1
        return 1 + (self.prompt_counts[-1] if self.prompt_mode == 'deep' else self.num_prompts)

    # ------------------------------------------------------------------------------------------
    def _qkv_bias(self, attn: nn.Module) -> Optional[Tensor]:
        bias = attn.qkv.bias
        deltas = [getattr(attn, f'{n}_bias_delta', None) for n in ('q', 'k', 'v')]
        if all(d is None for d in deltas):
            return bias
        zero = attn.qkv.weight.new_zeros(self.embed_dims)
        delta = torch.cat([zero if d is None else d for d in deltas])
        return delta if bias is None else bias + delta

    def _layer_forward(self, layer: nn.Module, x: Tensor, num_prefix: int,
                       with_taps: bool) -> Tuple[Tensor, Optional[GuidanceTaps]]:
        """One encoder layer (MMPretrain's ``TransformerEncoderLayer``) with fused attention.

        ``x`` is B x L x D laid out as ``[CLS, prompts (num_prefix - 1), patches]``. Returns the
        layer's output (B x L x D) and, when ``with_taps`` is set, its guidance taps (else
        ``None``); they are slices of tensors the forward pass computes anyway.
        """
        attn = layer.attn
        B, L, D = x.shape
        heads, head_dims = attn.num_heads, attn.head_dims
        qkv = F.linear(layer.ln1(x), attn.qkv.weight, self._qkv_bias(attn))
        q, k, v = qkv.reshape(B, L, 3, heads, head_dims).permute(2, 0, 3, 1, 4)
        heads_out = F.scaled_dot_product_attention(q, k, v)  # B x heads x L x head_dims
        heads_out = heads_out.transpose(1, 2).reshape(B, L, D)  # Concat(H_1..H_h), before W_O
        out = attn.proj(heads_out)
        taps = None
        if with_taps:
            q_tokens = qkv[..., :D]  # B x L x D, heads concatenated as in W_Q
            taps = GuidanceTaps(
                prompt_query=q_tokens[0, 1:num_prefix],
                prompt_raw=x[0, 1:num_prefix],
                cls_query=q_tokens[:, 0],
                patch_mhsa=heads_out[:, num_prefix:],
                patch_mhsa_proj=out[:, num_prefix:],
                block_input=x[:, num_prefix:])
        x = x + attn.out_drop(attn.gamma1(attn.proj_drop(out)))
        x = layer.ffn(layer.ln2(x), identity=x)
        return x, taps

    def _insert_prompts(self, x: Tensor, layer_idx: int, num_prefix: int) -> Tuple[Tensor, int]:
        """Replace the previous layer's prompt slots by this layer's prompts (VPT-Deep), or
        insert the input prompts (VPT-Shallow, layer 0).

        When the layer has as many prompts as there are slots, they are written into the slots
        in place (``x`` is the previous layer's fresh output, which no autograd node saved):
        no copy of the B x L x D sequence forward, one backward. A ``torch.cat`` costs a copy
        forward and two zero-filled B x L x D gradients plus their sum backward. A layer whose
        output was handed out (``out_indices``) is never written to.
        """
        if self.prompt_mode == 'shallow' and layer_idx > 0:
            return x, num_prefix
        prompts = self.prompts[layer_idx]
        num = prompts.shape[0]
        if num == 0 and num_prefix == 1:
            return x, num_prefix
        prompts = self.prompt_dropout(prompts).to(x.dtype)
        if num == num_prefix - 1 and layer_idx - 1 not in self.out_indices:
            x[:, 1:num_prefix] = prompts
            return x, num_prefix
        x = torch.cat([x[:, :1], prompts.expand(x.shape[0], -1, -1), x[:, num_prefix:]], dim=1)
        return x, 1 + num

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """MMPretrain's / MMSeg's backbone contract: B x 3 x H x W images -> one output per
        ``out_indices`` (shapes by ``out_type``, see the class). Returns no guidance taps."""
        outs, _, _ = self._forward(x, prompts=True, with_taps=False)
        return outs

    def forward_with_taps(self, x: Tensor, prompts: bool = True
                          ) -> Tuple[Tuple[Tensor, ...], Dict[int, GuidanceTaps], Tensor]:
        """The forward pass that also returns what the DA-VPT guidance reads.

        Args:
            x: B x 3 x H x W images.
            prompts: ``False`` runs the plain pre-trained ViT (no prompt inserted), as the
                initial class -> prompt mapping needs.

        Returns:
            ``(outs, taps, final_tokens)``: ``outs`` as :meth:`forward`; ``taps``, the
            :class:`GuidanceTaps` of every guided layer by layer index; ``final_tokens``, the
            last layer's output (after the final norm), B x L x D laid out as
            ``[CLS, prompts, patches]`` with :meth:`final_num_prefix` ``(prompts)`` tokens in
            front of the patches. Works in training and in eval mode; the guided layers are
            never checkpointed (``with_cp``) in this pass, the others are as in :meth:`forward`.
        """
        return self._forward(x, prompts=prompts, with_taps=True)

    def _forward(self, x: Tensor, prompts: bool, with_taps: bool
                 ) -> Tuple[Tuple[Tensor, ...], Dict[int, GuidanceTaps], Tensor]:
        B = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = x + resize_pos_embed(self.pos_embed, self.patch_resolution, patch_resolution,
                                 mode=self.interpolate_mode, num_extra_tokens=1)
        x = self.pre_norm(self.drop_after_pos(x))

        taps: Dict[int, GuidanceTaps] = {}
        num_prefix = 1
        outs = []
        for i, layer in enumerate(self.layers):
            if prompts:
                x, num_prefix = self._insert_prompts(x, i, num_prefix)
            if with_taps and i in self.guided_layers:
                x, taps[i] = self._layer_forward(layer, x, num_prefix, True)
            elif self.with_cp and self.training and x.requires_grad:
                x, _ = cp.checkpoint(self._layer_forward, layer, x, num_prefix, False,
                                     use_reentrant=False)
            else:
                x, _ = self._layer_forward(layer, x, num_prefix, False)
            if i == self.num_layers - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format(x, patch_resolution, num_prefix))
        return tuple(outs), taps, x

    def _format(self, x: Tensor, hw: Tuple[int, int], num_prefix: int) -> Tensor:
        if self.out_type == 'raw':
            return x
        if self.out_type == 'cls_token':
            return x[:, 0]
        patches = x[:, num_prefix:]
        if self.out_type == 'featmap':
            return patches.reshape(x.shape[0], *hw, -1).permute(0, 3, 1, 2).contiguous()
        return self.ln2(patches.mean(dim=1))  # avg_featmap

    # ------------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Load ``init_cfg=dict(type='Pretrained', checkpoint=...)`` strictly, any known layout.

        MMPretrain, MMSeg, timm, jax ``.npz``, MoCo-v3 and DINOv2 layouts are converted by
        :func:`mmdavpt.utils.ckpt_convert.load_vit_state_dict`. Every frozen backbone tensor must
        be matched: a mismatch raises instead of silently training from a random backbone.
        Without a ``Pretrained`` ``init_cfg`` it raises unless ``allow_random_backbone=True``.
        """
        checkpoint = pretrained_checkpoint(self.init_cfg, self.allow_random_backbone)
        if checkpoint is None:
            super().init_weights()
            return
        self.load_pretrained(checkpoint)
        self._is_init = True

    @property
    def pretrained_loaded(self) -> bool:
        """Whether :meth:`load_pretrained` has put pre-trained weights into the backbone."""
        return self._pretrained_loaded

    def load_pretrained(self, checkpoint: Union[str, dict]) -> None:
        """Load a pre-trained ViT into the frozen backbone; see :meth:`init_weights`."""
        from mmdavpt.utils.ckpt_convert import compare_state_dicts, load_vit_state_dict
        state_dict = load_vit_state_dict(checkpoint)
        name = checkpoint if isinstance(checkpoint, str) else 'the given state dict'
        own = self.state_dict()
        if not self.final_norm:  # e.g. SETR takes un-normalised features: the final norm is unused
            dropped = [state_dict.pop(k) for k in ('ln1.weight', 'ln1.bias') if k in state_dict]
            if dropped:
                MMLogger.get_current_instance().info(
                    'DAVPTViT: final_norm=False, the checkpoint\'s final norm ln1 is not used')
        tuned = {k for k in own if k.startswith('prompts.') or k.endswith('_bias_delta')}
        if 'patch_embed.projection.bias' in own and 'patch_embed.projection.bias' not in \
                state_dict and 'patch_embed.projection.weight' in state_dict:
            # MMSeg's ViT has no patch-embedding bias (patch_bias=False): zero is the same model.
            state_dict['patch_embed.projection.bias'] = torch.zeros_like(
                own['patch_embed.projection.bias'])
        ckpt_patch = state_dict.get('patch_embed.projection.weight')
        if ckpt_patch is not None and tuple(ckpt_patch.shape[-2:]) != to_2tuple(self.patch_size):
            raise ValueError(f'{name}: patch size {tuple(ckpt_patch.shape[-2:])} does not match '
                             f'the model\'s {to_2tuple(self.patch_size)}')
        for key, value in state_dict.items():
            if key in own and key != 'pos_embed' and value.shape != own[key].shape:
                raise ValueError(f'{name}: {key} has shape {tuple(value.shape)} but the model '
                                 f'({self.embed_dims} wide) needs {tuple(own[key].shape)}')
        mismatch = compare_state_dicts(own, state_dict, allowed_missing=tuned,
                                       shape_exempt=own)  # shapes: checked above
        missing, unexpected = mismatch.missing, mismatch.unexpected
        if mismatch:
            raise KeyError(f'{name} does not match DAVPTViT(arch with {self.num_layers} layers, '
                           f'{self.embed_dims} wide): missing backbone keys {missing[:20]}'
                           f'{" ..." if len(missing) > 20 else ""} ({len(missing)} in all); '
                           f'unexpected keys {unexpected[:20]} ({len(unexpected)} in all)')
        self.load_state_dict(state_dict, strict=False)
        self._pretrained_loaded = True
        logger = MMLogger.get_current_instance()
        logger.info(f'DAVPTViT: loaded {len(state_dict)} pre-trained tensors from {name}')

    def _fill_frozen_from_pretrained(self, state_dict: dict, prefix: str, *args) -> None:
        """Load a tuned-only checkpoint on top of the pre-trained backbone of ``init_cfg``, after
        checking it was trained on that backbone (see
        :func:`mmdavpt.models.backbones.tuned_only.load_tuned_only`)."""
        load_tuned_only(self, state_dict, prefix)


def davpt_backbones(model: nn.Module) -> Dict[str, DAVPTViT]:
    """Every :class:`DAVPTViT` in ``model`` by module name (``''`` if ``model`` is one)."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, DAVPTViT)}
