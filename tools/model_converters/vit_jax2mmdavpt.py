"""Convert an original google-research/vision_transformer ``.npz`` to the mmdavpt ViT layout.

Example::

    python tools/model_converters/vit_jax2mmdavpt.py ViT-B_16.npz \
        checkpoints/vit-b16_in21k_mmdavpt.pth

Works for ``ViT-B_16.npz`` and ``ViT-L_16.npz`` (ImageNet-21k): the patch kernel goes from HWIO
to OIHW, the per-head query/key/value kernels [D, heads, head_dim] are flattened, transposed and
fused into ``qkv``, dense kernels are transposed, ``head`` and ``pre_logits`` are dropped. The file
is read with NumPy (no pickle).
"""
from mmdavpt.utils.ckpt_convert import converter_main


def main(argv: list[str] | None = None) -> dict:
    return converter_main(__doc__, 'jax', 'jax checkpoint (.npz)', argv)


if __name__ == '__main__':
    main()
