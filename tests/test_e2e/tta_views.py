"""Run a script of ``tools/`` unchanged, as ``__main__``, recording the views that every
test-time augmentation step gets (the end-to-end tests check that ``--tta`` ran the config's own
scales and flips).

    python tests/test_e2e/tta_views.py OUT.jsonl tools/test.py CONFIG CKPT --tta ...

Each call of ``mmengine.model.BaseTTAModel.test_step`` (MMSeg's ``SegTTAModel``, MMPretrain's
``AverageClsScoreTTA``) appends one JSON line to OUT.jsonl: for each image of the batch, its path
and the list of its views, ``{"img_shape": [h, w], "ori_shape": [h, w], "flip": bool}``.
"""
import json
import os.path as osp
import runpy
import sys
from typing import List

from mmengine.model import BaseTTAModel


def view_record(data_sample) -> dict:
    """What a view's data sample says about it."""
    meta = data_sample.metainfo
    return dict(img_shape=list(meta['img_shape']), ori_shape=list(meta['ori_shape']),
                flip=bool(meta.get('flip', False)))


def main(argv: List[str]) -> None:
    out, script, *args = argv
    test_step = BaseTTAModel.test_step

    def recording_test_step(self, data):
        views = data['data_samples']  # one list per view, each with the batch's samples
        images = [dict(img_path=views[0][i].metainfo['img_path'],
                       views=[view_record(view[i]) for view in views])
                  for i in range(len(views[0]))]
        with open(out, 'a') as f:
            f.write(json.dumps(images) + '\n')
        return test_step(self, data)

    BaseTTAModel.test_step = recording_test_step
    sys.argv = [script, *args]
    sys.path.insert(0, osp.dirname(osp.abspath(script)))
    runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    main(sys.argv[1:])
