# PASCAL Context with 60 classes (59 + background), MMSeg's pascal_context.py plus the multi-scale
# + flip test pipeline that MMSeg 1.2.2 ships only for the 59-class variant (tools/test.py --tta).
_base_ = ['mmseg::_base_/datasets/pascal_context.py']

img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ])
]
