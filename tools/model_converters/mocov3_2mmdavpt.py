"""Convert a MoCo-v3 ViT checkpoint to the mmdavpt / MMPretrain ViT layout.

Example::

    python tools/model_converters/mocov3_2mmdavpt.py \
        linear-vit-b-300ep.pth.tar checkpoints/vit-b16_mocov3-300ep_mmdavpt.pth

Takes the linear-probing checkpoint (``state_dict`` of timm-style keys under ``module.``; the
linear head is dropped) or the pre-training one (``module.base_encoder.*`` is kept; the momentum
encoder, the predictor and the projection head are dropped). MoCo-v3's fixed 2-D sin-cos position
embedding is stored in the checkpoint and is copied like any other weight.
"""
from mmdavpt.utils.ckpt_convert import converter_main


def main(argv: list[str] | None = None) -> dict:
    return converter_main(__doc__, 'timm', 'MoCo-v3 checkpoint (.pth.tar)', argv,
                          meta={'pretraining': 'mocov3'})


if __name__ == '__main__':
    main()
