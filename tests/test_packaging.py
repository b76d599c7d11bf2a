"""setup.py: every third-party module that mmdavpt, mmdavpt_lab and the tests import is declared
(install_requires or a named extra), nothing is declared that is neither imported nor needed, the
version comes from mmdavpt/version.py, and a wheel ships the configs in ``mmdavpt/.mim`` so that
an installed mmdavpt resolves ``_base_ = 'mmdavpt::...'``."""
import ast
import functools
import importlib.util
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Dict, Set

import pytest

import mmdavpt

from conftest import REPO

#: Declared, not imported by our code: what each is for.
NOT_IMPORTED = {
    'ftfy': 'imported by MMSeg, not declared by it',
    'regex': 'imported by MMSeg, not declared by it',
}
#: First-party top-level modules (tests import their conftest).
FIRST_PARTY = {'mmdavpt', 'mmdavpt_lab', 'conftest'}


def _setup_module():
    spec = importlib.util.spec_from_file_location('mmdavpt_setup', osp.join(REPO, 'setup.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # setup() runs only as __main__
    return module


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    return re.sub(r'[-_.]+', '-', re.match(r'[A-Za-z0-9_.-]+', requirement).group()).lower()


def third_party_imports(folder: str) -> Dict[str, Set[str]]:
    """Top-level modules that the .py files under ``folder`` import (stdlib and first-party
    left out) -> the files importing each."""
    found: Dict[str, Set[str]] = {}
    for path in Path(REPO, folder).rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split('.')[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


@functools.cache
def _packages_distributions() -> Dict[str, list]:
    return metadata.packages_distributions()


def distributions_of(module: str) -> Set[str]:
    """The installed distributions that provide top-level ``module`` (normalised names)."""
    return {_name(d) for d in _packages_distributions().get(module, [])}


def test_declared_requirements_cover_every_import():
    setup = _setup_module()
    base = {_name(r) for r in setup.INSTALL_REQUIRES}
    extras = {k: {_name(r) for r in v} for k, v in setup.EXTRAS_REQUIRE.items()}
    # where each code base may take its modules from: the package from its requirements and
    # the extras for the optional parts, the lab from its extra, the tests from all of them
    allowed = {
        'mmdavpt': base | extras['lite'] | extras['seg'] | extras['convert'],
        'mmdavpt_lab': base | extras['lite'] | extras['seg'] | extras['lab'],
        'tests': base | extras['lite'] | extras['all'],
    }
    imported = set()
    for folder, declared in allowed.items():
        for module, files in third_party_imports(folder).items():
            dists = distributions_of(module)
            assert dists, f'{module} (imported by {sorted(files)}) is not installed here'
            assert dists & declared, (f'{module} (distribution {sorted(dists)}), imported by '
                                      f'{sorted(files)}, is declared nowhere that {folder} may '
                                      f'use (setup.py)')
            imported |= dists
    # mmcv-lite and mmcv are the same module: importing mmcv uses whichever is installed
    imported |= {'mmcv', 'mmcv-lite'} if imported & {'mmcv', 'mmcv-lite'} else set()
    declared = base.union(*extras.values())
    assert declared - imported == set(NOT_IMPORTED), \
        'declared but never imported (and not listed in NOT_IMPORTED with a reason)'
    assert extras['all'] == extras['seg'] | extras['convert'] | extras['lab'] | extras['tests']
    assert not extras['all'] & extras['lite']  # mmcv-lite and mmcv would share one module


def test_import_scan_sees_what_a_file_imports():
    scanned = third_party_imports('mmdavpt')
    assert 'mmdavpt/utils/ckpt_convert.py' in scanned['onnx']  # an import inside a function
    assert 'mmdavpt/models/mapping.py' in scanned['sklearn']
    assert distributions_of('sklearn') == {'scikit-learn'}
    assert 'os' not in scanned and 'mmdavpt' not in scanned


def test_version_comes_from_version_py():
    assert _setup_module().VERSION['__version__'] == mmdavpt.__version__ == \
        metadata.version('mmdavpt')


def _copy_sources(dst: Path) -> None:
    """The files a clone has (what git tracks, and new files it does not ignore)."""
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split('\n')
    for rel in filter(None, files):
        if osp.isfile(osp.join(REPO, rel)):
            os.makedirs(dst / osp.dirname(rel), exist_ok=True)
            shutil.copyfile(osp.join(REPO, rel), dst / rel)


@pytest.fixture(scope='module')
def installed(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources, installed (without dependencies) into a
    folder of its own."""
    if shutil.which('git') is None or not osp.exists(osp.join(REPO, '.git')):
        pytest.skip('needs a git checkout')
    tmp = tmp_path_factory.mktemp('wheel')
    _copy_sources(tmp / 'src')
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check']
    subprocess.run([*pip, 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w',
                    str(tmp / 'dist'), str(tmp / 'src')], check=True, capture_output=True)
    (wheel, ) = (tmp / 'dist').glob('mmdavpt-*.whl')
    subprocess.run([*pip, 'install', '--no-deps', '-q', '--target', str(tmp / 'site'),
                    str(wheel)], check=True, capture_output=True)
    return tmp


def test_wheel_ships_the_configs_in_mim(installed):
    (wheel, ) = (installed / 'dist').glob('mmdavpt-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {str(p.relative_to(REPO)) for p in Path(REPO, 'configs').rglob('*.py')}
    assert {f'mmdavpt/.mim/{c}' for c in configs} <= names
    assert {'mmdavpt/.mim/model-index.yml', 'mmdavpt/.mim/tools/train.py',
            'mmdavpt/.mim/tools/test.py', 'mmdavpt/.mim/demo/image_demo.py'} <= names
    assert not any('__pycache__' in n for n in names)
    assert any(n.startswith('mmdavpt_lab/') for n in names)


def test_installed_package_resolves_mmdavpt_bases(installed, tmp_path):
    """User configs that inherit a classification and a segmentation config of the installed
    package (not this checkout) read and build in their task's scope."""
    (tmp_path / 'my_cls.py').write_text(
        "_base_ = ['mmdavpt::demo/vit-s14-imgfocus_davpt_animal-mnist-56px.py']\n"
        'model = dict(head=dict(num_classes=7))\n')
    (tmp_path / 'my_seg.py').write_text(
        "_base_ = ['mmdavpt::segmentation/setr_pup_davpt_vit-l_8xb2-160k_ade20k-512x512.py']\n")
    code = textwrap.dedent(f"""
        import mmdavpt
        from mmdavpt.utils.config import load_config
        from mmdavpt.utils.params import build_model_on_meta
        assert mmdavpt.__file__.startswith({str(installed / 'site')!r}), mmdavpt.__file__
        for name in ('my_cls.py', 'my_seg.py'):
            cfg = load_config(name)
            scopes = {{h.get('_scope_') for h in cfg.custom_hooks}}
            model = build_model_on_meta(cfg.model, scope=cfg.default_scope)
            print(name, cfg.default_scope, type(model).__name__, sorted(scopes),
                  cfg.model.head.num_classes if 'head' in cfg.model else '-')
        """)
    env = dict(os.environ, PYTHONPATH=str(installed / 'site'), PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "my_cls.py mmpretrain DAVPTImageClassifier ['mmpretrain'] 7" in proc.stdout
    assert "my_seg.py mmseg DAVPTEncoderDecoder ['mmseg'] -" in proc.stdout
