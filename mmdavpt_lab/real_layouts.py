"""Small data trees in the real on-disk layouts of the paper's benchmarks, for end-to-end runs.

Each builder writes a handful of real-sized images in exactly the folder layout, file names,
split files and label conventions that the shipped configs read, and returns the directory a
config's ``data_root`` names:

- :func:`build_ade20k`: ``ADEChallengeData2016/{images,annotations}/{training,validation}``
  (MMSeg's ``ADE20KDataset``: jpg images, png annotations, 0 = "other", ignored through
  ``reduce_zero_label``; classes 1-150);
- :func:`build_pascal_context`: ``VOCdevkit/VOC2010/{JPEGImages,SegmentationClassContext,
  ImageSets/SegmentationContext/{train,val}.txt}`` (MMSeg's ``PascalContextDataset`` and
  ``PascalContextDataset59``: 0 = background, classes 1-59; the 59-class variant ignores 0
  through ``reduce_zero_label``, the 60-class one counts it);
- :func:`build_vtab1k`: the extracted VTAB-1k form ``vtab-1k/{task}/{train800,val200,
  train800val200,test}.txt``, lines ``images/train800/000000.jpg 3`` (``VTAB1kDataset``);
- :func:`build_fgvc`: one FGVC dataset with VPT's ``{train,val,test}.json`` =
  ``{image path relative to the image root: class id}`` (``VPTFGVCDataset``).

The images are not noise: a classification image is a class-coloured field with a class-shaped
figure; a segmentation image paints each labelled region in its class's colour, with texture.
Everything is deterministic for a seed. Image sizes are those of the real data sets (typical
values, ``(width, height)``); every builder takes a ``size`` to override them.

A builder refuses to write into a dataset directory that already exists (it never overwrites a
user's data). Needs only NumPy and Pillow.
"""
import json
import os
import os.path as osp
import zlib
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

Size = Tuple[int, int]  # (width, height) in pixels

#: VTAB-1k task -> number of classes (the table of ``mmdavpt.datasets.VTAB_TASKS``; this module
#: does not import ``mmdavpt``, a test checks the two agree).
VTAB_NUM_CLASSES: Dict[str, int] = {
    'cifar': 100, 'caltech101': 102, 'dtd': 47, 'oxford_flowers102': 102, 'oxford_iiit_pet': 37,
    'svhn': 10, 'sun397': 397, 'patch_camelyon': 2, 'eurosat': 10, 'resisc45': 45,
    'diabetic_retinopathy': 5, 'clevr_count': 8, 'clevr_dist': 6, 'dmlab': 6, 'kitti': 4,
    'dsprites_loc': 16, 'dsprites_ori': 16, 'smallnorb_azi': 18, 'smallnorb_ele': 9,
}
#: Typical image size of each VTAB-1k task as extracted (width, height).
VTAB_IMAGE_SIZES: Dict[str, Size] = {
    'cifar': (32, 32), 'caltech101': (300, 200), 'dtd': (640, 480),
    'oxford_flowers102': (500, 541), 'oxford_iiit_pet': (500, 375), 'svhn': (32, 32),
    'sun397': (400, 300), 'patch_camelyon': (96, 96), 'eurosat': (64, 64),
    'resisc45': (256, 256), 'diabetic_retinopathy': (300, 300), 'clevr_count': (480, 320),
    'clevr_dist': (480, 320), 'dmlab': (480, 360), 'kitti': (1242, 375),
    'dsprites_loc': (64, 64), 'dsprites_ori': (64, 64), 'smallnorb_azi': (96, 96),
    'smallnorb_ele': (96, 96),
}
#: FGVC dataset -> (folder name in the configs, image root, number of classes, typical size).
#: The image roots and class counts are those of ``mmdavpt.datasets.FGVC_DATASETS``.
FGVC_LAYOUTS: Dict[str, Tuple[str, str, int, Size]] = {
    'cub': ('CUB_200_2011', 'images', 200, (500, 375)),
    'nabirds': ('nabirds', 'images', 555, (1024, 768)),
    'oxford_flowers': ('OxfordFlower', '', 102, (500, 667)),
    'stanford_dogs': ('Stanford-dogs', 'Images', 120, (500, 375)),
    'stanford_cars': ('Stanford-cars', '', 196, (700, 466)),
}
ADE20K_SIZE: Size = (683, 512)
PASCAL_CONTEXT_SIZE: Size = (500, 375)
#: The class ids the segmentation trees paint by default: twelve, more than the ten guided
#: prompts of the DA-VPT configs, whose first class -> prompt mapping needs at least as many
#: classes seen in the training data as prompts.
ADE20K_CLASSES = (1, 2, 3, 4, 5, 7, 10, 13, 15, 20, 21, 23)
PASCAL_CONTEXT_CLASSES = (2, 9, 15, 19, 23, 26, 33, 40, 44, 50, 55, 59)


# ---- images ----------------------------------------------------------------------------------
def _rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator for (seed, keys): each task/split gets its own stream."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _class_colour(label: int) -> np.ndarray:
    """A fixed, well spread RGB colour for a class id (golden-ratio hues), float32 (3,)."""
    hue = (label * 0.618034) % 1.0
    rgb = np.array([abs(hue * 6 - 3) - 1, 2 - abs(hue * 6 - 2), 2 - abs(hue * 6 - 4)])
    level = 0.55 + 0.35 * ((label * 7) % 5) / 4
    return (np.clip(rgb, 0, 1) * 200 * level + 30).astype(np.float32)


def _texture(rng: np.random.Generator, size: Size, amount: float = 18.) -> np.ndarray:
    """Low-frequency texture plus pixel noise, float32 (H, W, 1)."""
    w, h = size
    coarse = rng.normal(0, amount, (max(h // 32, 2), max(w // 32, 2))).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR))
    return (smooth + rng.normal(0, amount / 6, (h, w)).astype(np.float32))[..., None]


def class_image(rng: np.random.Generator, label: int, size: Size) -> Image.Image:
    """A classification image of class ``label``: a field in the class's colour with a figure
    whose shape (ellipse, box, triangle) and colour follow the class, placed at random.

    Returns:
        an RGB image of ``size`` (width, height).
    """
    w, h = size
    img = _class_colour(label)[None, None] + _texture(rng, size)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    fw, fh = (max(int(s * rng.uniform(0.3, 0.6)), 2) for s in (w, h))
    x0, y0 = int(rng.integers(0, w - fw + 1)), int(rng.integers(0, h - fh + 1))
    box = (x0, y0, x0 + fw - 1, y0 + fh - 1)
    fill = tuple(int(c) for c in 255 - _class_colour(label * 3 + 1))
    shape = label % 3
    if shape == 0:
        draw.ellipse(box, fill=fill)
    elif shape == 1:
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(x0 + fw // 2, y0), (x0, y0 + fh - 1), (x0 + fw - 1, y0 + fh - 1)],
                     fill=fill)
    return canvas


def seg_pair(rng: np.random.Generator, classes: Sequence[int], size: Size,
             background: int = 0, num_objects: int = 5) -> Tuple[Image.Image, Image.Image]:
    """A segmentation image and its label map, a simple scene: a top and a bottom band of two
    "stuff" classes with ``background`` between them, then ``num_objects`` ellipses and boxes
    of other classes (all drawn from ``classes``, distinct while there are enough); every region
    is painted in its class's colour, with texture.

    Returns:
        (RGB image, mode 'L' label map), both of ``size`` (width, height).
    """
    w, h = size
    picked = rng.choice(np.asarray(classes), size=num_objects + 2,
                        replace=len(classes) < num_objects + 2).tolist()
    labels = Image.new('L', size, background)
    draw = ImageDraw.Draw(labels)
    draw.rectangle((0, 0, w, int(h * rng.uniform(0.2, 0.4))), fill=picked[0])
    draw.rectangle((0, int(h * rng.uniform(0.6, 0.8)), w, h), fill=picked[1])
    for cls in picked[2:]:
        ow, oh = int(w * rng.uniform(0.12, 0.35)), int(h * rng.uniform(0.12, 0.35))
        x0, y0 = int(rng.integers(0, w - ow)), int(rng.integers(0, h - oh))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + ow, y0 + oh),
                                                                  fill=cls)
    label_map = np.asarray(labels)
    palette = np.stack([_class_colour(c) for c in range(256)])
    img = palette[label_map] + _texture(rng, size)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)), labels


# ---- trees -----------------------------------------------------------------------------------
def _new_dir(path: str) -> str:
    """Create the dataset directory; refuse one that already exists."""
    if osp.exists(path):
        raise FileExistsError(f'{path} already exists; the builder writes only new trees')
    os.makedirs(path)
    return path


def _save(img: Image.Image, path: str) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    img.save(path, quality=90) if path.endswith('.jpg') else img.save(path)


def _check_count(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, got {value!r}')


def build_ade20k(root: str, num_train: int = 8, num_val: int = 2,
                 classes: Sequence[int] = ADE20K_CLASSES, size: Size = ADE20K_SIZE,
                 seed: int = 0) -> str:
    """ADE20K (SceneParsing challenge) in its release layout under ``root``::

        ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_00000001.jpg
        ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_00000001.png

    Annotations hold 0 ("other", ignored: MMSeg's ``reduce_zero_label`` maps it to 255) and the
    ids in ``classes`` (1-150; class k becomes k - 1 after the reduction).

    Args:
        root: parent directory (created if needed); ``ADEChallengeData2016`` must not exist.
        num_train, num_val: images per split.
        classes: ADE class ids (1-150) painted into the images.
        size: image size (width, height); ADE20K's are mostly about 683 x 512.
        seed: the random seed.

    Returns:
        ``{root}/ADEChallengeData2016``, the configs' ``data_root``.
    """
    _check_count('num_train', num_train)
    _check_count('num_val', num_val)
    if not classes or any(not 1 <= c <= 150 for c in classes):
        raise ValueError(f'classes must be ADE20K ids in 1..150, got {classes!r}')
    data_root = _new_dir(osp.join(root, 'ADEChallengeData2016'))
    for split, tag, count in (('training', 'train', num_train), ('validation', 'val', num_val)):
        rng = _rng(seed, 'ade20k', split)
        for i in range(1, count + 1):
            img, ann = seg_pair(rng, classes, size, background=0)
            name = f'ADE_{tag}_{i:08d}'
            _save(img, osp.join(data_root, 'images', split, name + '.jpg'))
            _save(ann, osp.join(data_root, 'annotations', split, name + '.png'))
    return data_root


def build_pascal_context(root: str, num_train: int = 8, num_val: int = 2,
                         classes: Sequence[int] = PASCAL_CONTEXT_CLASSES,
                         size: Size = PASCAL_CONTEXT_SIZE, seed: int = 0) -> str:
    """PASCAL Context on VOC2010 as MMSeg reads it, under ``root``::

        VOCdevkit/VOC2010/JPEGImages/2008_000001.jpg            (also one image in no split)
        VOCdevkit/VOC2010/SegmentationClassContext/2008_000001.png
        VOCdevkit/VOC2010/ImageSets/SegmentationContext/{train,val}.txt   (one image id a line)

    Label maps as MMSeg's ``tools/dataset_converters/pascal_context.py`` writes them: 0 is
    background (a class of the 60-class benchmark, ignored by the 59-class one through
    ``reduce_zero_label``), 1-59 the other classes. ``JPEGImages`` holds, as in VOC2010, an image
    that no context split lists (and that has no label map): a reader must go by the split
    files.

    Args:
        root: parent directory; ``VOCdevkit/VOC2010`` must not exist.
        num_train, num_val: images per split.
        classes: context class ids (1-59) painted on the background.
        size: image size (width, height); VOC's are mostly 500 x 375 or 375 x 500.
        seed: the random seed.

    Returns:
        ``{root}/VOCdevkit/VOC2010``, the configs' ``data_root``.
    """
    _check_count('num_train', num_train)
    _check_count('num_val', num_val)
    if not classes or any(not 1 <= c <= 59 for c in classes):
        raise ValueError(f'classes must be PASCAL Context ids in 1..59, got {classes!r}')
    data_root = _new_dir(osp.join(root, 'VOCdevkit', 'VOC2010'))
    sets_dir = osp.join(data_root, 'ImageSets', 'SegmentationContext')
    os.makedirs(sets_dir)
    index = 1
    for split, count in (('train', num_train), ('val', num_val)):
        rng, ids = _rng(seed, 'pascal_context', split), []
        for _ in range(count):
            image_id = f'2008_{index:06d}'
            index += 1
            img, ann = seg_pair(rng, classes, size, background=0)
            _save(img, osp.join(data_root, 'JPEGImages', image_id + '.jpg'))
            _save(ann, osp.join(data_root, 'SegmentationClassContext', image_id + '.png'))
            ids.append(image_id)
        with open(osp.join(sets_dir, f'{split}.txt'), 'w') as f:
            f.write('\n'.join(ids) + '\n')
    unlisted = class_image(_rng(seed, 'pascal_context', 'unlisted'), 0, size)
    _save(unlisted, osp.join(data_root, 'JPEGImages', f'2008_{index:06d}.jpg'))
    return data_root


def build_vtab1k(root: str, tasks: Sequence[str] = ('kitti', ), num_train: Optional[int] = None,
                 num_val: int = 4, num_test: int = 4, size: Optional[Size] = None,
                 seed: int = 0) -> str:
    """VTAB-1k tasks in the extracted form under ``root``::

        vtab-1k/{task}/images/{train800,val200,test}/000000.jpg
        vtab-1k/{task}/{train800,val200,train800val200,test}.txt   lines "images/.../000000.jpg 3"

    ``train800val200.txt`` lists the train800 and then the val200 images. Labels go round the
    task's classes, so a training split covers every class when it has at least as many images.

    Args:
        root: parent directory; ``vtab-1k/{task}`` must not exist for any of ``tasks``.
        tasks: any of the 19 VTAB-1k tasks.
        num_train: train800 images per task; default: the task's number of classes, at least 8
            (fewer than the classes is an error: the dataset requires every class in training).
        num_val, num_test: val200 and test images per task.
        size: image size (width, height); default: the task's typical size.
        seed: the random seed.

    Returns:
        ``{root}/vtab-1k``, the configs' ``data_root``.
    """
    unknown = [t for t in tasks if t not in VTAB_NUM_CLASSES]
    if not tasks or unknown:
        raise ValueError(f'tasks must be VTAB-1k tasks ({", ".join(VTAB_NUM_CLASSES)}), '
                         f'got {list(tasks)!r}')
    _check_count('num_val', num_val)
    _check_count('num_test', num_test)
    data_root = osp.join(root, 'vtab-1k')
    for task in tasks:
        num_classes = VTAB_NUM_CLASSES[task]
        n_train = max(num_classes, 8) if num_train is None else num_train
        _check_count(f'num_train ({task}, {num_classes} classes)', n_train, num_classes)
        task_dir = _new_dir(osp.join(data_root, task))
        lines = {}
        for split, count in (('train800', n_train), ('val200', num_val), ('test', num_test)):
            rng, lines[split] = _rng(seed, 'vtab1k', task, split), []
            for i in range(count):
                rel, label = f'images/{split}/{i:06d}.jpg', i % num_classes
                _save(class_image(rng, label, size or VTAB_IMAGE_SIZES[task]),
                      osp.join(task_dir, rel))
                lines[split].append(f'{rel} {label}')
        lines['train800val200'] = lines['train800'] + lines['val200']
        for split, split_lines in lines.items():
            with open(osp.join(task_dir, f'{split}.txt'), 'w') as f:
                f.write('\n'.join(split_lines) + '\n')
    return data_root


def _fgvc_key(name: str, label: int, index: int, rng: np.random.Generator) -> str:
    """An image path relative to the image root, named as in each data set's release."""
    if name == 'cub':
        species = f'Species_{label + 1}'
        return f'{label + 1:03d}.{species}/{species}_{index:04d}_{index + 17}.jpg'
    if name == 'nabirds':
        return f'{label + 295:04d}/{rng.bytes(16).hex()}.jpg'
    if name == 'stanford_dogs':
        wnid = f'n{2085620 + label:08d}'
        return f'{wnid}-Breed_{label + 1}/{wnid}_{index}.jpg'
    if name == 'stanford_cars':
        return f'car_ims/{index:06d}.jpg'
    return f'jpg/image_{index:05d}.jpg'  # oxford_flowers


def build_fgvc(root: str, name: str, train_per_class: int = 1, num_val: int = 4,
               num_test: int = 4, size: Optional[Size] = None, seed: int = 0) -> str:
    """One FGVC data set with VPT's json splits under ``root``::

        {folder}/{train,val,test}.json     {"<path under the image root>": class id, ...}
        {folder}/{image root}/...          CUB, NABirds: images/; Dogs: Images/; Cars, Flowers: .

    ``folder`` is the one the configs name (``CUB_200_2011``, ``nabirds``, ``OxfordFlower``,
    ``Stanford-cars``, ``Stanford-dogs``). Class ids are 0-based, every class is in train.json
    (``train_per_class`` images each), val and test go round the classes.

    Args:
        root: parent directory; ``{root}/{folder}`` must not exist.
        name: ``'cub'``, ``'nabirds'``, ``'oxford_flowers'``, ``'stanford_dogs'`` or
            ``'stanford_cars'``.
        train_per_class: training images per class.
        num_val, num_test: images in val.json and test.json.
        size: image size (width, height); default: the data set's typical size.
        seed: the random seed.

    Returns:
        ``{root}/{folder}``, the configs' ``data_root``.
    """
    if name not in FGVC_LAYOUTS:
        raise ValueError(f'name must be one of {sorted(FGVC_LAYOUTS)}, got {name!r}')
    _check_count('train_per_class', train_per_class)
    _check_count('num_val', num_val)
    _check_count('num_test', num_test)
    folder, image_root, num_classes, default_size = FGVC_LAYOUTS[name]
    data_root = _new_dir(osp.join(root, folder))
    labels = {
        'train': [c for c in range(num_classes) for _ in range(train_per_class)],
        'val': [i % num_classes for i in range(num_val)],
        'test': [i % num_classes for i in range(num_test)],
    }
    index = 1
    for split, split_labels in labels.items():
        rng, content = _rng(seed, 'fgvc', name, split), {}
        for label in split_labels:
            key = _fgvc_key(name, label, index, rng)
            index += 1
            _save(class_image(rng, label, size or default_size),
                  osp.join(data_root, image_root, key))
            content[key] = label
        with open(osp.join(data_root, f'{split}.json'), 'w') as f:
            json.dump(content, f)
    return data_root
