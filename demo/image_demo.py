"""Run a trained mmdavpt model on one image (MMSeg's ``demo/image_demo.py`` form).

    python demo/image_demo.py IMAGE CONFIG CHECKPOINT [--out-file FILE] [--device DEVICE]
                              [--opacity O] [--with-labels] [--force]

The config's ``default_scope`` picks the task:

- ``mmpretrain`` (classification, MMPretrain's ``ImageClassificationInferencer``): prints the top
  class and its score; ``--out-file`` writes them as JSON, with the scores of all classes.
- ``mmseg`` (segmentation, MMSeg's ``MMSegInferencer``): ``--out-file`` writes the predicted mask
  painted over the image (MMSeg's visualiser); without it, the share of the image's pixels per
  predicted class is printed.

CHECKPOINT is a full checkpoint, or a tuned-only one (``TunedOnlyCheckpointHook``), whose frozen
backbone is then loaded from the pre-trained file that the config's
``model.backbone.init_cfg.checkpoint`` names (the one it was trained on; checked). Class names come
from the checkpoint (``meta['dataset_meta']``, saved by every training run).
"""
import argparse
import json
import os.path as osp
from typing import List, Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmdavpt  # noqa: F401  registers mmdavpt's modules and the torch.load allowlist
from mmdavpt.utils.config import load_config
from mmdavpt.utils.dependencies import require_mmseg
from mmdavpt.utils.io import atomic_write, check_output_path

SCOPES = ('mmpretrain', 'mmseg')
#: What ``--out-file`` may be for a segmentation config (OpenCV encodes by extension).
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Classify or segment one image with an mmdavpt config and checkpoint')
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config file (default_scope mmpretrain or mmseg)')
    parser.add_argument('checkpoint', help='checkpoint file (full or tuned-only)')
    parser.add_argument(
        '--out-file',
        help='classification: JSON of the prediction; segmentation: the image with the '
        'predicted mask painted over it')
    parser.add_argument(
        '--device', default='cuda:0' if torch.cuda.is_available() else 'cpu',
        help='device used for inference (default: cuda:0 if there is a GPU, else cpu)')
    parser.add_argument(
        '--opacity', type=float, default=0.5,
        help='segmentation: opacity of the painted mask, in (0, 1]')
    parser.add_argument(
        '--with-labels', action='store_true',
        help='segmentation: write the class names onto the painted mask')
    parser.add_argument('--force', action='store_true', help='replace an existing --out-file')
    return parser.parse_args(argv)


def classify(img: str, cfg: Config, checkpoint: str, device: str) -> dict:
    """The top class of ``img``: ``pred_label`` (int), ``pred_score`` (softmax probability),
    ``pred_class`` (name, or None when the checkpoint has no class names) and ``pred_scores``
    (the probabilities of all classes, in label order)."""
    from mmpretrain.apis import ImageClassificationInferencer

    # MMPretrain's inferencer builds its pipeline in the current default scope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        inferencer = ImageClassificationInferencer(model=cfg, pretrained=checkpoint,
                                                   device=device)
        result = inferencer(img)[0]
    return dict(image=img, pred_label=int(result['pred_label']),
                pred_class=result.get('pred_class'), pred_score=float(result['pred_score']),
                pred_scores=[float(s) for s in result['pred_scores']])


def segment(img: str, cfg: Config, checkpoint: str, device: str, opacity: float = 0.5,
            with_labels: bool = False) -> dict:
    """The prediction of ``img``: ``mask`` (H x W class ids, the image's size), ``painted``
    (H x W x 3 RGB uint8, the mask over the image) and ``classes`` (names, by class id)."""
    from mmseg.apis import MMSegInferencer
    if not 0 < opacity <= 1:
        raise ValueError(f'--opacity must be in (0, 1], got {opacity}')
    inferencer = MMSegInferencer(model=cfg, weights=checkpoint, device=device)
    result = inferencer(img, return_vis=True, opacity=opacity, with_labels=with_labels)
    # one input: MMSegInferencer returns its mask and painting unlisted
    return dict(mask=np.asarray(result['predictions']), painted=result['visualization'],
                classes=inferencer.model.dataset_meta.get('classes'))


def pixel_shares(mask: np.ndarray, classes: Optional[List[str]]) -> List[str]:
    """One line per predicted class, most pixels first: name (id) and share of the pixels."""
    counts = np.bincount(mask.ravel().astype(np.int64))
    lines = []
    for label in np.argsort(-counts, kind='stable'):
        if counts[label] == 0:
            break
        name = classes[label] if classes is not None and label < len(classes) else str(label)
        lines.append(f'{name} ({label}): {100 * counts[label] / mask.size:.1f} % of the pixels')
    return lines


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    for what, path in (('image', args.img), ('config', args.config),
                       ('checkpoint', args.checkpoint)):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} file not found: {path}')
    if args.out_file is not None:
        check_output_path(args.out_file, sources=(args.img, args.config, args.checkpoint),
                          force=args.force)
    cfg = load_config(args.config)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(f'{args.config}: default_scope must be one of {SCOPES}, got {scope!r}')
    if scope == 'mmpretrain':
        result = classify(args.img, cfg, args.checkpoint, args.device)
        name = result['pred_class'] if result['pred_class'] is not None else 'class'
        print(f'{args.img}: {name} (label {result["pred_label"]}), '
              f'score {result["pred_score"]:.4f}')
        if args.out_file is not None:
            def write_json(tmp: str) -> None:
                with open(tmp, 'w') as f:
                    json.dump(result, f, indent=2)
            atomic_write(args.out_file, write_json)
            print(f'prediction written to {args.out_file}')
        return
    require_mmseg(f'the segmentation config {args.config}')
    ext = osp.splitext(args.out_file or '')[1].lower()
    if args.out_file is not None and ext not in IMAGE_EXTENSIONS:
        raise ValueError(f'--out-file {args.out_file}: the painted mask is an image; use one of '
                         f'the extensions {IMAGE_EXTENSIONS}')
    result = segment(args.img, cfg, args.checkpoint, args.device, opacity=args.opacity,
                     with_labels=args.with_labels)
    print(f'{args.img}: ' + '; '.join(pixel_shares(result['mask'], result['classes'])))
    if args.out_file is not None:
        import cv2
        encoded = cv2.imencode(ext, np.ascontiguousarray(result['painted'][..., ::-1]))[1]

        def write_image(tmp: str) -> None:
            with open(tmp, 'wb') as f:
                f.write(encoded.tobytes())
        atomic_write(args.out_file, write_image)
        print(f'painted mask written to {args.out_file}')


if __name__ == '__main__':
    main()
