"""mmdavpt.utils.cli: what tools/test.py does with an ``--out`` file that exists."""
import glob
import os.path as osp
import pickle

from mmengine.runner import Runner

from mmdavpt.utils.cli import merge_test_args, run_test

from conftest import shapes_task_cfg, write_shapes_task


def test_test_out_replaces_an_existing_file_and_says_so(tmp_path):
    """MMPretrain's tools/test.py replaces an existing ``--out`` file without a word; ours does
    the same, with a warning naming the file (a user's file is never replaced silently)."""
    root = str(tmp_path / 'data')
    write_shapes_task(root)
    Runner.from_cfg(shapes_task_cfg(root, tmp_path / 'run')).train()
    out = tmp_path / 'predictions.pkl'
    out.write_bytes(b'an earlier file')
    work_dir = str(tmp_path / 'test')
    cfg = merge_test_args(shapes_task_cfg(root, work_dir, name='test'),
                          str(tmp_path / 'run' / 'epoch_1.pth'), work_dir=work_dir)
    run_test(cfg, out=str(out))
    with open(out, 'rb') as f:
        assert len(pickle.load(f)) == 8  # the predictions of the 8 val200 images
    (log, ) = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(log) as f:
        assert f'--out {out} exists: this test replaces it with its predictions' in f.read()
