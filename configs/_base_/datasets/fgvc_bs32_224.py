# FGVC with VPT's json splits ({data_root}/{train,val,test}.json). Training: random resized crop
# 224 + horizontal flip; evaluation: resize the short edge to 256, centre crop 224 (as VPT).
# Train on train.json, select on val.json, test once on test.json. The dataset is set by
# configs/_base_/datasets/fgvc/{name}.py.
dataset_type = 'VPTFGVCDataset'

train_pipeline = [
    dict(type='LoadImageFromFileStrict'),
    dict(type='RandomResizedCrop', scale=224, interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
# The test pipeline keeps LoadImageFromFile, the step MMPretrain's ImageClassificationInferencer
# replaces; training images are loaded strictly (an unreadable one stops the run, naming it).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=None, dataset_name=None, split='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=None, dataset_name=None, split='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_dataloader = dict(
    batch_size=64,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=None, dataset_name=None, split='test',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
