# VTAB-1k (extracted form: {data_root}/{task}/{train800,val200,train800val200,test}.txt).
# Resize to 224 x 224, no augmentation. Train on train800, select on val200, test once on test.
# The task is set by configs/_base_/datasets/vtab1k/{task}.py.
dataset_type = 'VTAB1kDataset'
data_root = 'data/vtab-1k'

# Training images are loaded strictly (an unreadable one stops the run, naming it); the test
# pipeline keeps LoadImageFromFile, the step MMPretrain's ImageClassificationInferencer replaces.
train_pipeline = [
    dict(type='LoadImageFromFileStrict'),
    dict(type='Resize', scale=(224, 224), interpolation='bicubic'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(224, 224), interpolation='bicubic'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=data_root, task=None, split='train800',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=data_root, task=None, split='val200',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_dataloader = dict(
    batch_size=64,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=data_root, task=None, split='test',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
