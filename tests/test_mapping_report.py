import csv
import dataclasses
import glob
import json
import os
import shutil

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmdavpt.engine.hooks.mapping_hook import REMAP_HISTORY_FILE, RemapRecord

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


def test_read_remap_history(tmp_path):
    run = tmp_path / '20250101_000000'
    run.mkdir()
    history = [RemapRecord('iteration', 0, True, [0, 0, 1, 1, 1], 0.4, 0.1, 5),
               RemapRecord('iteration', 200, False, [0, 1, 1, 1, 1], 0.2, 0.0, 5)]
    (run / REMAP_HISTORY_FILE).write_text(
        ''.join(json.dumps(dataclasses.asdict(r)) + '\n' for r in history))
    (run / '20250101_000000.log').write_text('INFO - Epoch(train) [1][4/4] lr: 1e-2\n')
    records = mr.read_logs(str(tmp_path))
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


def test_rewording_the_log_message_does_not_change_the_report(tiny_run, tmp_path, capsys):
    """The report reads the remap history, not the wording of the human log line."""
    reworded = tmp_path / 'reworded'
    shutil.copytree(tiny_run, reworded, ignore=shutil.ignore_patterns('mapping_report'))
    logs = glob.glob(str(reworded / '*' / '*.log'))
    assert logs
    for path in logs:
        with open(path) as f:
            text = f.read()
        assert 'DA-VPT remap (' in text and 'class_to_prompt=' in text
        with open(path, 'w') as f:
            f.write(text.replace('DA-VPT remap (', 'Prompts reassigned [').replace(
                'class_to_prompt=', 'mapping: '))
    assert [r.label for r in mr.read_logs(str(reworded))] == ['initial', 'epoch 1', 'epoch 2']
    reports = []
    for work_dir in (tiny_run, str(reworded)):
        with open(os.path.join(mr.main([work_dir, '--out', str(tmp_path / 'out')]),
                               'mapping_report.md')) as f:
            reports.append(f.read().replace(work_dir, 'WORK_DIR'))
    assert reports[0] == reports[1] and '| epoch 2 | log+checkpoint |' in reports[1]


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
