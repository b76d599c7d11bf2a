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
from mmdavpt.utils.ckpt_convert import converter_main


def main(argv: list[str] | None = None) -> dict:
    return converter_main(__doc__, 'timm', 'timm checkpoint (.pth, .bin, .safetensors)', argv)


if __name__ == '__main__':
    main()
