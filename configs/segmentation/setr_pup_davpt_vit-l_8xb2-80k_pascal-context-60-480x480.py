# DA-VPT: SETR-PUP on a frozen ViT-L/16 (IN-21k), PASCAL Context with 60 classes (59 +
# background), 480x480 crops, 80k iterations, 8 GPUs x 2 images.
# MMSeg 1.2.2 has no SETR config for PASCAL Context: this is upstream's ADE20K SETR-PUP recipe
# (heads, SGD lr 1e-3, slide test) at PASCAL Context's crop size and 80k schedule, as in the SETR
# paper. The paper's Table 2 compares this with
# setr_pup_{linear,bias,vpt,davpt-plus,full}_vit-l_8xb2-80k_pascal-context-60-480x480.py.
# Single scale: tools/test.py CONFIG CKPT; multi-scale (0.5-1.75) + flip: add --tta.
_base_ = [
    './_base_/setr_pup_davpt_vit-l_8xb2.py', './_base_/datasets/pascal_context_60.py',
    './_base_/schedules/schedule_80k.py'
]
from mmdavpt.utils.compose import strict_pipeline  # noqa: E402  (after _base_)

crop_size = _base_.crop_size  # the dataset's
num_classes = 60
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(img_size=crop_size),
    decode_head=dict(num_classes=num_classes),
    # upstream's ADE20K SETR-PUP auxiliary heads on layers 9, 14 and 19
    auxiliary_head=[
        dict(_base_.setr_aux_head, in_index=i, num_classes=num_classes) for i in range(3)
    ],
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(320, 320)))
optim_wrapper = _base_.setr_davpt_optim_wrapper
optimizer = optim_wrapper.optimizer

# 4,996 training images / 16 per iteration: one epoch is about 310 iterations.
custom_hooks = [dict(type='SemanticMappingHook', interval=310)]

# Broken data stops the run, naming the file: strict image loading for training (the test
# pipelines keep LoadImageFromFile, which the inferencers look for), and every mask checked
# against its image's size and the 60 classes (+ 255, the ignored pixels) right after loading.
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
