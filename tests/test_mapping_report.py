import csv
import os
import shutil

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import mmdavpt  # noqa: F401

from conftest import TINY_CLASSES, load_tool, write_tiny_config

mr = load_tool('tools/analysis/mapping_report.py')


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """A 2-epoch DA-VPT run of the tiny config: remap log lines and one checkpoint per epoch."""
    tmp = tmp_path_factory.mktemp('run')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = Config.fromfile(write_tiny_config(tmp))
    cfg.work_dir = str(tmp / 'work_dir')
    Runner.from_cfg(cfg).train()
    torch.set_num_threads(threads)
    return cfg.work_dir


def test_parse_log_lines():
    lines = [
        'INFO - DA-VPT remap (initial): k-means 0.1 s over 5 classes, 40.0% of classes moved; '
        'class_to_prompt=[0, 0, 1, 1, 1]\n',
        'INFO - Epoch(train) [1][4/4] lr: 1e-2\n',
        'INFO - DA-VPT remap (after iteration 200): k-means 0.0 s over 5 classes, 20.0% of '
        'classes moved; class_to_prompt=[0, 1, 1, 1, 1]\n']
    records = mr.parse_log_lines(lines)
    assert [(r.unit, r.step, r.class_to_prompt) for r in records] == [
        ('initial', 0, [0, 0, 1, 1, 1]), ('iteration', 200, [0, 1, 1, 1, 1])]
    assert records[1].label == 'iteration 200'
    assert mr.changes(records[0].class_to_prompt, records[1].class_to_prompt) == [(1, 0, 1)]
    assert mr.rand_index([0, 0, 1], [1, 1, 0]) == 1.0  # prompts renamed, same grouping
    assert mr.rand_index([0, 0, 1], [0, 1, 1]) == pytest.approx(1 / 3)


def test_report_of_a_tiny_run_reads_logs_and_checkpoints(tiny_run, tmp_path, capsys):
    logs = mr.read_logs(tiny_run)
    assert [r.label for r in logs] == ['initial', 'epoch 1', 'epoch 2']
    ckpts, classes = mr.read_checkpoints(tiny_run)
    assert classes == list(TINY_CLASSES)  # from the checkpoints' dataset_meta
    assert sorted({r.label for r in ckpts}) == ['epoch 1', 'epoch 2']  # epoch_N and best_*
    out = mr.main([tiny_run, '--out', str(tmp_path / 'report')])
    printed = capsys.readouterr().out
    final = mr.merge_records(logs, ckpts)[-1].class_to_prompt
    assert '| epoch 2 | log+checkpoint |' in printed
    for p in range(2):  # the final table lists every class under its prompt, by name
        names = ', '.join(TINY_CLASSES[c] for c, q in enumerate(final) if q == p)
        assert f'| {p} | {final.count(p)} | {names} |' in printed
    assert sorted(os.listdir(out)) == ['mapping_history.csv', 'mapping_report.md',
                                       'mapping_report.png']
    with open(os.path.join(out, 'mapping_history.csv')) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['class', 'name', 'initial', 'epoch 1', 'epoch 2']
    assert [int(r[-1]) for r in rows[1:]] == final


def test_report_from_checkpoints_only_and_disagreement(tiny_run, tmp_path):
    # logs gone (e.g. a copied work dir): the checkpoints still give the history
    ckpt_only = tmp_path / 'ckpt_only'
    ckpt_only.mkdir()
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        shutil.copy(os.path.join(tiny_run, name), ckpt_only / name)
    records = mr.merge_records(mr.read_logs(str(ckpt_only)), mr.read_checkpoints(
        str(ckpt_only))[0])
    assert [(r.label, r.sources) for r in records] == [('epoch 1', ('checkpoint', )),
                                                       ('epoch 2', ('checkpoint', ))]
    log = mr.MappingRecord('epoch', 2, [9] * 5, ('log', ))
    with pytest.warns(UserWarning, match='another mapping'):
        merged = mr.merge_records([log], records)
    assert merged[-1].class_to_prompt == [9] * 5
    with pytest.raises(SystemExit, match='no DA-VPT mapping'):
        mr.main([str(tmp_path / 'empty')])
