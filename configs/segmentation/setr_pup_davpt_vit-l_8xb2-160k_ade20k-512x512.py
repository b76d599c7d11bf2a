# DA-VPT: SETR-PUP on a frozen ViT-L/16 (IN-21k), ADE20K, 512x512 crops, 160k iterations, 8 GPUs x 2
# images. Upstream's setr_vit-l_pup_8xb2-160k_ade20k-512x512.py with the backbone of
# ./_base_/models/setr_pup_davpt_vit-l.py; the paper's Table 2 compares this with
# setr_pup_{linear,bias,vpt,davpt-plus,full}_vit-l_8xb2-160k_ade20k-512x512.py.
# Single scale: tools/test.py CONFIG CKPT; multi-scale (0.5-1.75) + flip: add --tta.
_base_ = [
    './_base_/setr_pup_davpt_vit-l_8xb2.py', 'mmseg::_base_/datasets/ade20k.py',
    './_base_/schedules/schedule_160k.py'
]
from mmdavpt.utils.compose import strict_pipeline  # noqa: E402  (after _base_)

crop_size = _base_.crop_size  # the dataset's
num_classes = 150
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(img_size=crop_size),
    decode_head=dict(num_classes=num_classes),
    # upstream's ADE20K auxiliary heads on layers 9, 14 and 19
    auxiliary_head=[
        dict(_base_.setr_aux_head, in_index=i, num_classes=num_classes) for i in range(3)
    ],
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
optim_wrapper = _base_.setr_davpt_optim_wrapper
optimizer = optim_wrapper.optimizer

# 20,210 training images / 16 per iteration: one epoch is about 1,250 iterations.
custom_hooks = [dict(type='SemanticMappingHook', interval=1250)]

# Broken data stops the run, naming the file: strict image loading for training (the test
# pipelines keep LoadImageFromFile, which the inferencers look for), and every mask checked
# against its image's size and the 150 classes (+ 255, the ignored pixels) right after loading.
train_dataloader = dict(
    batch_size=2,
    dataset=dict(pipeline=strict_pipeline(_base_.train_pipeline, num_classes=num_classes)))
val_dataloader = dict(
    batch_size=1,
    dataset=dict(pipeline=strict_pipeline(_base_.test_pipeline, num_classes=num_classes,
                                          strict_loading=False)))
test_dataloader = val_dataloader
tta_pipeline = strict_pipeline(_base_.tta_pipeline, num_classes=num_classes,
                               strict_loading=False)
