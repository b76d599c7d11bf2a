"""Strict data transforms: a broken image or mask stops the run with its file name.

MMCV's ``LoadImageFromFile`` re-raises a decoder error without the file name (an empty file
gives a bare ``cv2.error``), reports an undecodable file through an ``assert`` (gone under
``python -O``), and with ``ignore_empty=True`` returns ``None``, which MMEngine's dataset
answers in training by silently drawing another sample. :class:`LoadImageFromFileStrict`
raises instead, naming the file. Checking every image when a dataset is built would read the
whole dataset; here the check costs nothing extra because the image is decoded anyway.

Training pipelines use it. Test (and val, TTA) pipelines keep MMCV's ``LoadImageFromFile``: it is
the step that MMPretrain's ``ImageClassificationInferencer`` and MMSeg's ``MMSegInferencer`` look
for by name and replace with their in-memory loader, and a test image it cannot read still stops
the run (``ignore_empty`` is False: it raises, and MMEngine refuses a ``None`` test sample).
"""
from typing import Optional

import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmpretrain.registry import TRANSFORMS as PRETRAIN_TRANSFORMS

from mmdavpt.registry import WITH_MMSEG


class ImageDecodeError(OSError):
    """An image or mask file exists but cannot be decoded (empty, truncated, not an image)."""


class LoadImageFromFileStrict(LoadImageFromFile):
    """``LoadImageFromFile`` that raises, naming the file, when an image cannot be loaded.

    Same arguments and output keys (``img``, ``img_shape``, ``ori_shape``) as
    :class:`mmcv.transforms.LoadImageFromFile`, except that ``ignore_empty`` must stay False.

    Raises (from ``transform``):
        FileNotFoundError: the file does not exist.
        ImageDecodeError: the file is empty or the backend cannot decode it.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.ignore_empty:
            raise ValueError('LoadImageFromFileStrict never skips an image: ignore_empty must '
                             'be False (use LoadImageFromFile to skip unreadable images)')

    def _read_bytes(self, filename: str) -> bytes:
        if self.file_client_args is not None:
            client = fileio.FileClient.infer_client(self.file_client_args, filename)
            return client.get(filename)
        return fileio.get(filename, backend_args=self.backend_args)

    def transform(self, results: dict) -> dict:
        """Load ``results['img_path']`` into ``results['img']`` (H, W, C) uint8 or float32."""
        filename = results['img_path']
        try:
            img_bytes = self._read_bytes(filename)
        except FileNotFoundError as e:
            raise FileNotFoundError(f'image file not found: {filename}') from e
        if len(img_bytes) == 0:
            raise ImageDecodeError(f'image file is empty (0 bytes): {filename}')
        try:
            img = mmcv.imfrombytes(
                img_bytes, flag=self.color_type, backend=self.imdecode_backend)
        except Exception as e:
            raise ImageDecodeError(f'cannot decode image file {filename}: '
                                   f'{type(e).__name__}: {e}') from e
        if img is None:
            raise ImageDecodeError(
                f'cannot decode image file {filename} ({len(img_bytes)} bytes): not a complete '
                f'image in a format the {self.imdecode_backend!r} backend reads')
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results


class CheckSegMask(BaseTransform):
    """Raise, naming the mask file, if a mask does not fit its image or holds a label outside
    ``[0, num_classes)``.

    MMSeg trains on a mask smaller than its image with misaligned labels (the augmentations crop
    and pad both), and its ``IoUMetric`` drops test pixels whose label is out of range without a
    word. Put this right after ``LoadAnnotations`` (in a ``TestTimeAug`` pipeline: right after
    its ``LoadAnnotations``). It checks ``results['gt_seg_map']`` as loaded, i.e. after
    ``reduce_zero_label`` and any label map, before augmentations pad it with ``ignore_index``:

    - its (H, W) must equal the loaded image's ``ori_shape`` (so an image must be loaded
      before, e.g. by ``LoadImageFromFile``);
    - every value must be a class id or ``ignore_index`` (one histogram for uint8 masks).

    An image that comes without a mask (no ``seg_map_path``: MMSeg's ``MMSegInferencer`` drops
    ``LoadAnnotations`` from the test pipeline and feeds in-memory images) passes unchecked.

    Args:
        num_classes: number of classes, labels ``0..num_classes-1`` are valid.
        ignore_index: the label value that marks ignored pixels; also valid.
    """

    def __init__(self, num_classes: int, ignore_index: Optional[int] = 255) -> None:
        if num_classes < 1:
            raise ValueError(f'num_classes must be positive, got {num_classes}')
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        """Check ``results['gt_seg_map']`` (H, W) integer labels against
        ``results['ori_shape']`` (H, W); return ``results`` as is."""
        if 'gt_seg_map' not in results:
            if results.get('seg_map_path') is None:
                return results  # inference: an image without a mask
            raise KeyError(f"CheckSegMask: the mask {results['seg_map_path']} is not loaded (no "
                           f'gt_seg_map); put it after LoadAnnotations')
        seg = np.asarray(results['gt_seg_map'])
        path = results.get('seg_map_path', '<mask without seg_map_path>')
        if 'ori_shape' not in results:
            raise KeyError(f'CheckSegMask: no image loaded before the mask {path} (no '
                           f'ori_shape); put it after LoadImageFromFile and LoadAnnotations')
        if tuple(seg.shape[:2]) != tuple(results['ori_shape'][:2]):
            raise ValueError(
                f'segmentation mask {path} is {seg.shape[0]} x {seg.shape[1]} (H x W) but its '
                f'image {results.get("img_path", "")} is {results["ori_shape"][0]} x '
                f'{results["ori_shape"][1]}: the labels would not line up with the pixels. '
                f'Fix the annotation (or the ann_file pairing of images and masks).')
        if seg.dtype == np.uint8:
            counts = np.bincount(seg.ravel(), minlength=256)
            values = np.flatnonzero(counts)
        else:
            values, counts = np.unique(seg, return_counts=True)
            counts = dict(zip(values.tolist(), counts.tolist()))
        bad = [int(v) for v in values
               if not (0 <= v < self.num_classes or v == self.ignore_index)]
        if bad:
            shown = ', '.join(f'{v} ({counts[v]} px)' for v in bad[:10])
            raise ValueError(
                f'segmentation mask {path} has label values outside [0, {self.num_classes}) '
                f'that are not ignore_index={self.ignore_index}: {shown}')
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index})')


PRETRAIN_TRANSFORMS.register_module(module=LoadImageFromFileStrict)
if WITH_MMSEG:  # MMSeg's registry (mmdavpt[seg])
    from mmseg.registry import TRANSFORMS as SEG_TRANSFORMS
    SEG_TRANSFORMS.register_module(module=LoadImageFromFileStrict)
    SEG_TRANSFORMS.register_module(module=CheckSegMask)
