# Demo on digits (scikit-learn's real handwritten 8 x 8 digits, 10 classes): the settings of
# vit-s14-imgfocus_davpt-plus_animal-mnist-56px.py
# with only the data and the number of classes changed. Data: tools/prepare_demo_data.py
# --tasks digits (docs/reports/classification.md).
# M = 5 guided prompts < 10 classes: the k-means mapping groups classes.
_base_ = ['./vit-s14-imgfocus_davpt-plus_animal-mnist-56px.py']
task_data = dict(data_root='data/extra_vtab', task='digits')
train_dataloader = dict(dataset=task_data)
val_dataloader = dict(dataset=task_data)
test_dataloader = dict(dataset=task_data)
model = dict(head=dict(num_classes=10))
