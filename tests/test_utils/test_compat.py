"""What mmdavpt changes in other libraries, and that it changes nothing else
(docs/architecture.md, "Import-time changes").

- Importing the package adds mmengine's checkpoint types to ``torch.load``'s safe-mode allowlist
  and changes nothing else: no warning filter, no checkpoint loader, no other allowlist entry;
  safe mode still refuses everything else.
- The checked loader of local checkpoints is MMEngine's only where asked for
  (``register_checkpoint_loader``, which the tools call); there it loads what MMEngine's loader
  loads, identically, and every other prefix keeps its loader.
"""
import json
import os
import os.path as osp
import pickle
import subprocess
import sys
from argparse import Namespace

import pytest
import torch
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import load_from_local

from mmdavpt.registry import build_model
from mmdavpt.utils import NotACheckpointError, mmengine_safe_globals, register_checkpoint_loader

from conftest import REPO, tiny_backbone_cfg

# In a fresh process: import what mmdavpt imports, record the global state, import mmdavpt,
# record it again.
_IMPORT_PROBE = r'''
import json, sys, warnings
import numpy, sklearn.cluster, torch, torch.distributed.nn
import mmcv, mmengine, mmengine.runner, mmpretrain.models, mmpretrain.structures, mmseg.models
from mmengine.runner import CheckpointLoader

def name(obj):
    return f'{obj.__module__}.{obj.__qualname__}'

def state():
    return dict(
        filters=[repr(f) for f in warnings.filters],
        loaders={k: name(v) for k, v in CheckpointLoader._schemes.items()},
        # (object, the name it is allowed under) or an object allowed under its own name
        safe=sorted(f'{name(g[0])} as {g[1]}' if isinstance(g, tuple) else name(g)
                    for g in torch.serialization.get_safe_globals()))

before = state()
import mmdavpt
after = state()
print(json.dumps(dict(before=before, after=after, mmdavpt=mmdavpt.__file__)))
'''


def test_importing_mmdavpt_changes_only_the_torch_load_allowlist():
    done = subprocess.run([sys.executable, '-c', _IMPORT_PROBE], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    before, after = probe['before'], probe['after']
    assert osp.dirname(probe['mmdavpt']) == osp.join(REPO, 'mmdavpt')
    assert after['filters'] == before['filters']
    assert after['loaders'] == before['loaders']
    assert after['loaders'][''] == 'mmengine.runner.checkpoint.load_from_local'
    added = set(after['safe']) - set(before['safe'])
    assert added == {f'{obj.__module__}.{obj.__qualname__} as {name}'
                     for obj, name in mmengine_safe_globals()}
    assert set(before['safe']) <= set(after['safe'])


def test_safe_mode_still_refuses_what_is_not_allowlisted(tmp_path):
    """The allowlist (in force in this process, which imported mmdavpt) lets mmengine's types
    through and nothing else: a checkpoint with another object still fails in safe mode, and a
    plain state dict loads as before."""
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': Namespace(a=1)}, path)
    with pytest.raises(pickle.UnpicklingError, match='argparse.Namespace'):
        torch.load(path, weights_only=True)
    torch.save({'state_dict': {'w': torch.ones(2)}}, path)
    assert torch.equal(torch.load(path, weights_only=True)['state_dict']['w'], torch.ones(2))


@pytest.fixture
def mmengine_loaders():
    """MMEngine's own loader of local paths during the test, and the loaders as they were
    after it."""
    saved = dict(CheckpointLoader._schemes)
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    yield
    CheckpointLoader._schemes.clear()
    CheckpointLoader._schemes.update(saved)


def test_registered_loader_changes_only_what_a_non_checkpoint_says(tmp_path, mmengine_loaders):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.arange(3.)}, 'meta': {'epoch': 2}}, good)
    bad = tmp_path / 'weights.pth'
    bad.write_bytes(b'<html>not found</html>')
    missing = str(tmp_path / 'missing.pth')
    with pytest.raises(Exception) as upstream_bad:
        CheckpointLoader.load_checkpoint(str(bad), map_location='cpu')
    assert not isinstance(upstream_bad.value, NotACheckpointError)
    with pytest.raises(FileNotFoundError) as upstream_missing:
        CheckpointLoader.load_checkpoint(missing)
    others = {k: v for k, v in CheckpointLoader._schemes.items() if k != ''}

    register_checkpoint_loader()
    register_checkpoint_loader()  # idempotent
    assert {k: v for k, v in CheckpointLoader._schemes.items() if k != ''} == others
    assert list(CheckpointLoader._schemes)[-1] == ''  # still the last prefix tried
    loaded = CheckpointLoader.load_checkpoint(str(good), map_location='cpu')
    assert loaded['meta'] == {'epoch': 2}
    assert torch.equal(loaded['state_dict']['w'], torch.arange(3.))
    with pytest.raises(FileNotFoundError) as ours_missing:
        CheckpointLoader.load_checkpoint(missing)
    assert str(ours_missing.value) == str(upstream_missing.value)
    # used by load_from, resume and init_cfg=dict(type='Pretrained') of any module
    with pytest.raises(NotACheckpointError, match=r'weights\.pth is not a PyTorch checkpoint '
                       r"\(22 bytes, starting with b'<html>not found<'"):
        CheckpointLoader.load_checkpoint(str(bad), map_location='cpu')


def test_davpt_backbone_names_a_non_checkpoint_without_the_registration(tmp_path,
                                                                       mmengine_loaders):
    """DAVPTViT reads its pre-trained weights through the converters' reader, which checks the
    file itself."""
    bad = tmp_path / 'vit.pth'
    bad.write_bytes(b'\x00' * 64)
    backbone = build_model(tiny_backbone_cfg(
        allow_random_backbone=False, init_cfg=dict(type='Pretrained', checkpoint=str(bad))))
    with pytest.raises(NotACheckpointError, match=r'vit\.pth is not a PyTorch checkpoint'):
        backbone.init_weights()


def test_the_tools_ask_for_the_checked_loader(monkeypatch, mmengine_loaders):
    """``build_runner`` (tools/train.py, tools/test.py, tools/search.py, mmdavpt_lab) registers
    it before the runner loads anything."""
    from mmengine.config import Config

    from mmdavpt.utils import cli, load_from_local_checked
    seen = []
    monkeypatch.setattr(cli.Runner, 'from_cfg',
                        lambda cfg: seen.append(CheckpointLoader._schemes['']) or 'runner')
    assert CheckpointLoader._schemes[''] is load_from_local
    assert cli.build_runner(Config(dict(default_scope='mmpretrain'))) == 'runner'
    assert seen == [load_from_local_checked]
