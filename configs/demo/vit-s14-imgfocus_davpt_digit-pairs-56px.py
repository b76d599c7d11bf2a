# Demo on digit-pairs (two of scikit-learn's real handwritten digits, 45 classes): the settings of
# vit-s14-imgfocus_davpt_animal-mnist-56px.py
# with only the data and the number of classes changed. Data: tools/prepare_demo_data.py
# --tasks digit-pairs (docs/reports/classification.md).
# M = 5 guided prompts < 45 classes: the k-means mapping groups classes.
_base_ = ['./vit-s14-imgfocus_davpt_animal-mnist-56px.py']
task_data = dict(data_root='data/extra_vtab', task='digit_pairs')
train_dataloader = dict(dataset=task_data)
val_dataloader = dict(dataset=task_data)
test_dataloader = dict(dataset=task_data)
model = dict(head=dict(num_classes=45))
