"""The version checks at import and MMSeg as an option (``mmdavpt.utils.dependencies``)."""
import os
import subprocess
import sys
import textwrap

import pytest

from mmdavpt.utils import dependencies

from conftest import REPO, write_tiny_config

SEG_DEMO = os.path.join(REPO, 'configs', 'segmentation', 'demo',
                        'setr_pup_davpt_vit-s14_1xb8-600it_animal-mnist-seg-112x112.py')


def _run_without_mmseg(code: str, cwd) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python where ``import mmseg`` fails as if MMSeg were not installed."""
    prelude = 'import sys\nsys.modules["mmseg"] = None  # no MMSeg\n'
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONWARNINGS='ignore')
    return subprocess.run([sys.executable, '-c', prelude + textwrap.dedent(code)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def test_classification_trains_without_mmseg(tmp_path):
    config = write_tiny_config(tmp_path, max_epochs=1)
    proc = _run_without_mmseg(f"""
        import runpy
        import mmdavpt
        from mmpretrain.registry import MODELS, TRANSFORMS
        from mmdavpt.registry import WITH_MMSEG, build_model
        assert not WITH_MMSEG
        assert 'DAVPTImageClassifier' in MODELS.module_dict
        assert 'LoadImageFromFileStrict' in TRANSFORMS.module_dict
        assert not hasattr(mmdavpt.models, 'DAVPTEncoderDecoder')
        try:
            build_model(dict(type='DAVPTEncoderDecoder'), scope='mmseg')
        except ImportError as e:
            print('build_model:', e)
        sys.argv = ['train.py', {config!r}, '--work-dir', {str(tmp_path / 'work')!r}]
        runpy.run_path({os.path.join(REPO, 'tools', 'train.py')!r}, run_name='__main__')
        print('mmseg modules:', sorted(m for m in sys.modules if m.startswith('mmseg.')))
        sys.argv = ['test.py', {SEG_DEMO!r}, 'x.pth', '--work-dir', {str(tmp_path / 'seg')!r}]
        runpy.run_path({os.path.join(REPO, 'tools', 'test.py')!r}, run_name='__main__')
        """, tmp_path)
    assert 'build_model: building a model in the mmseg scope needs MMSeg: MMSeg is not ' \
           "installed (pip install 'mmdavpt[seg]'" in proc.stdout, proc.stderr[-3000:]
    assert 'Epoch(val) [1][2/2]' in proc.stdout and (tmp_path / 'work' / 'epoch_1.pth').exists()
    assert 'mmseg modules: []' in proc.stdout
    assert proc.returncode != 0 and proc.stderr.rstrip().endswith(
        f"ImportError: the segmentation config {SEG_DEMO} needs MMSeg: MMSeg is not installed "
        "(pip install 'mmdavpt[seg]' with an mmcv that has its compiled ops (mim install "
        "'mmcv>=2.0.0rc4,<2.2.0'))"), proc.stderr[-3000:]


@pytest.fixture
def fresh_reason():
    """A fresh :func:`dependencies.mmseg_unusable_reason` for the test, and after it."""
    dependencies.mmseg_unusable_reason.cache_clear()
    yield dependencies.mmseg_unusable_reason
    dependencies.mmseg_unusable_reason.cache_clear()


def test_mmseg_needs_mmcv_with_ops_in_its_range(monkeypatch, fresh_reason):
    assert fresh_reason() is None  # this environment: MMSeg 1.2.2, mmcv 2.1.0 with ops
    monkeypatch.setattr(dependencies, 'mmcv_version', lambda: '2.2.0')
    fresh_reason.cache_clear()
    assert fresh_reason().startswith('MMSeg 1.2.2 needs mmcv>=2.0.0rc4,<2.2.0, but mmcv 2.2.0 '
                                     'is installed')
    monkeypatch.setattr(dependencies, 'mmcv_version', lambda: '2.1.0')
    monkeypatch.setattr(dependencies, 'mmcv_has_ops', lambda: False)
    fresh_reason.cache_clear()
    assert 'needs the compiled ops of mmcv, which the installed mmcv 2.1.0 does not have ' \
           '(mmcv-lite?)' in fresh_reason()
    # MMSeg installed but unusable: importing mmdavpt says so, and classification goes on
    with pytest.warns(UserWarning, match='mmdavpt: segmentation is off: MMSeg needs the compiled'):
        dependencies.check_versions()
    assert not dependencies.mmseg_available()


def test_version_checks_say_what_to_install(monkeypatch, fresh_reason):
    dependencies.check_versions()  # this environment passes
    real = dependencies._dist_version
    monkeypatch.setattr(dependencies, '_dist_version',
                        lambda name: '0.9.1' if name == 'mmengine' else real(name))
    with pytest.raises(ImportError, match=r"mmdavpt needs mmengine>=0\.10\.0,<1\.0\.0, but "
                       r"mmengine 0\.9\.1 is installed: pip install 'mmengine>=0\.10\.0,<1\.0\.0'"):
        dependencies.check_versions()
    monkeypatch.setattr(dependencies, '_dist_version',
                        lambda name: None if name == 'mmpretrain' else real(name))
    with pytest.raises(ImportError, match=r'mmpretrain is not installed: pip install '):
        dependencies.check_versions()
    monkeypatch.setattr(dependencies, '_dist_version', real)
    monkeypatch.setattr(dependencies, 'mmcv_version', lambda: None)
    with pytest.raises(ImportError, match=r"none is installed: install mmcv-lite for "
                       r"classification \(pip install 'mmdavpt\[lite\]'"):
        dependencies.check_versions()
    monkeypatch.setattr(dependencies, 'mmcv_version', lambda: '2.4.0')
    with pytest.raises(ImportError, match=r"needs mmcv>=2\.0\.0,<2\.4\.0 \(MMPretrain's range\), "
                       r'but mmcv 2\.4\.0 is installed'):
        dependencies.check_versions()
