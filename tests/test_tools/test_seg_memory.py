"""``tools/analysis/seg_memory.py``: its CUDA path run on the CPU (CUDA's memory counters
replaced by fakes), and the report of its CUDA branch."""
import contextlib
import json
import os.path as osp
from types import SimpleNamespace

import pytest
import torch

from mmdavpt.models.guidance import PromptGuidance

from conftest import REPO, load_tool

# The demo's ViT-S/14 SETR-PUP: the smallest shipped DA-VPT segmentation config.
DEMO_SEG_CONFIG = osp.join(REPO, 'configs', 'segmentation', 'demo',
                           'setr_pup_davpt_vit-s14_1xb8-600it_animal-mnist-seg-112x112.py')


@pytest.fixture(scope='module')
def seg_memory():
    return load_tool('tools/analysis/seg_memory.py')


class FakeCudaMemory:
    """``torch.cuda``'s memory counters as a device that reports fixed numbers (the model runs
    on the CPU)."""

    def __init__(self):
        self.resets = 0
        self.peaks = iter([5 << 20, 7 << 20])

    def install(self, monkeypatch):
        cuda = torch.cuda
        monkeypatch.setattr(cuda, 'synchronize', lambda device=None: None)
        monkeypatch.setattr(cuda, 'memory_allocated', lambda device=None: 3 << 20)
        monkeypatch.setattr(cuda, 'reset_peak_memory_stats', self.reset)
        monkeypatch.setattr(cuda, 'max_memory_allocated', lambda device=None: next(self.peaks))
        monkeypatch.setattr(cuda, 'max_memory_reserved', lambda device=None: 9 << 20)
        monkeypatch.setattr(cuda, 'get_device_name', lambda device=None: 'Fake GPU')

    def reset(self, device=None):
        self.resets += 1


def test_measure_cuda_memory_runs_on_the_cpu(seg_memory, monkeypatch):
    """The whole CUDA measurement of a real (demo) config, on the CPU: two steps without the
    guidance losses, two with them, then the timed steps with them; every figure comes from
    CUDA's counters."""
    fake = FakeCudaMemory()
    fake.install(monkeypatch)
    calls = []
    losses = PromptGuidance.losses

    def counted(self, *args, **kwargs):
        calls.append(self.mapping.fixed)
        return losses(self, *args, **kwargs)

    monkeypatch.setattr(PromptGuidance, 'losses', counted)
    result = seg_memory.measure_cuda_memory(DEMO_SEG_CONFIG, size=28, batch=1, with_cp=True,
                                            timed_steps=1, device='cpu')
    assert calls == [True] * 3  # 2 measured + 1 timed step with guidance, none before
    assert fake.resets == 2
    assert {k: v for k, v in result.items() if k != 'step_s'} == dict(
        static=3 << 20, peak_no_guidance=5 << 20, peak=7 << 20, reserved=9 << 20,
        guidance=True, gpu='Fake GPU')
    assert result['step_s'] > 0
    monkeypatch.undo()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match='torch sees no CUDA device'):
            seg_memory.measure_cuda_memory(DEMO_SEG_CONFIG, size=28, batch=1, with_cp=False)


def test_seg_memory_cuda_report(seg_memory, tmp_path, monkeypatch, capsys):
    """The CUDA branch of seg_memory's main (tables, the comparison with the meta count, the
    JSON), with the GPU children replaced by fixed results."""
    GiB = 2**30
    children = []

    def run(fn, kwds):
        kind, kwargs = fn.__name__, kwds
        children.append((kind, kwargs))
        if kind == 'measure_cuda_memory':
            extra = GiB if kwargs['with_cp'] else 2 * GiB
            return dict(static=GiB, peak_no_guidance=5 * GiB + extra, peak=5 * GiB + extra + 2**22,
                        reserved=8 * GiB, step_s=0.25, guidance=True, gpu='fake')
        assert kind == 'count_training_memory'
        return dict(static=GiB, peak=(6 if kwargs['with_cp'] else 7) * GiB)

    monkeypatch.setattr(seg_memory, 'measuring_pool',
                        lambda **_: contextlib.nullcontext(SimpleNamespace(apply=run)))
    out = tmp_path / 'seg.json'
    report = seg_memory.main(['cfg.py', '--device', 'cuda', '--out', str(out)])
    assert [k for k, _ in children] == ['measure_cuda_memory', 'measure_cuda_memory',
                                        'count_training_memory', 'count_training_memory']
    assert all(kw['size'] == 512 and kw['batch'] == 2 for _, kw in children)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    cmp = {c['with_cp']: c for c in report['measured_vs_counted']}
    assert cmp[False]['ratio'] == 1.0 and cmp[True]['ratio'] == 1.0
    assert cmp[True]['guidance_bytes'] == 2**22
    printed = capsys.readouterr().out
    assert 'Measured on CUDA: 2 x 512x512' in printed and '| 1.000 | 4.0 |' in printed
    children.clear()
    report = seg_memory.main(['cfg.py', '--device', 'cuda', '--full-config', 'full.py'])
    assert [(k, kw['config'], kw['with_cp']) for k, kw in children] == [
        (kind, config, with_cp) for kind in ('measure_cuda_memory', 'count_training_memory')
        for config, with_cp in (('cfg.py', False), ('cfg.py', True), ('full.py', None))]
    assert [c['with_cp'] for c in report['measured_vs_counted']] == [False, True, None]
    with pytest.raises(SystemExit):
        seg_memory.parse_args(['cfg.py', '--device', 'cuda', '--full-size', '0'])
