"""The segmentation demo on Animal-MNIST silhouettes (built by ``tools/prepare_demo_data.py``)."""
import os.path as osp
from typing import List

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

# The 10 animals in the label order of the PyPI package ``animal-mnist``.
ANIMAL_MNIST_CLASSES = ('bear', 'bird', 'cat', 'cow', 'dog', 'elephant', 'giraffe', 'horse',
                        'sheep', 'zebra')


def animal_mnist_palette() -> List[List[int]]:
    """RGB colours of background (black) and the 10 animals, for visualisation."""
    return [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
            [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60],
            [250, 190, 190]]


@DATASETS.register_module()
class AnimalMNISTSegDataset(BaseSegDataset):
    """The Animal-MNIST segmentation demo built by ``tools/prepare_demo_data.py``.

    Layout (11 classes: 0 background, ``1 + animal id`` for the animals)::

        data_root/img_dir/{train,val}/000000.png   RGB canvases
        data_root/ann_dir/{train,val}/000000.png   uint8 label maps
        data_root/splits/{train,val}.txt           image names without suffix

    Use ``ann_file='splits/train.txt'`` and
    ``data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train')``.
    Unlike :class:`mmseg.datasets.BaseSegDataset`, an empty split is an error.
    """

    METAINFO = dict(classes=('background', ) + ANIMAL_MNIST_CLASSES,
                    palette=animal_mnist_palette())

    def __init__(self, img_suffix: str = '.png', **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Like the parent, but a missing split file or an empty split raises."""
        if self.ann_file and not osp.exists(self.ann_file):
            raise FileNotFoundError(f'split file not found: {self.ann_file}')
        data_list = super().load_data_list()
        if not data_list:
            raise ValueError(f'no samples in {self.ann_file or self.data_prefix["img_path"]}')
        return data_list
