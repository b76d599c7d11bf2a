"""Convert a timm ViT checkpoint (IN-21k augreg, MAE, ...) to the mmdavpt / MMPretrain ViT layout.

Example::

    python tools/model_converters/timm2mmdavpt.py \
        vit_base_patch16_224.augreg_in21k.bin checkpoints/vit-b16_in21k-augreg_mmdavpt.pth

Reads ``.pth`` / ``.bin`` (and ``.safetensors`` when safetensors is installed); the original MAE
``mae_pretrain_vit_base.pth`` (``model`` wrapper, decoder keys dropped) works as well. MAE
fine-tuned checkpoints with ``fc_norm`` and no ``norm`` get ``fc_norm`` as the final norm (see
``mmdavpt.utils.ckpt_convert``). The output ``{'state_dict', 'meta'}`` loads into the backbone with
``init_cfg=dict(type='Pretrained', checkpoint=OUT)``.
"""
import argparse

from mmdavpt.utils.ckpt_convert import convert_checkpoint, describe_conversion


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='timm checkpoint (.pth, .bin, .safetensors)')
    parser.add_argument('dst', help='output .pth')
    args = parser.parse_args(argv)
    meta = convert_checkpoint(args.src, args.dst, layout='timm')
    print(describe_conversion(args.dst, meta))
    return meta


if __name__ == '__main__':
    main()
