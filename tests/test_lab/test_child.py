"""mmdavpt_lab.child: a forked run's process, and the one-way imports it allows."""
import ast
import os
import os.path as osp
import subprocess
import sys

from conftest import REPO


def _imports(path):
    """The modules a source file imports, at its top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {node.module} | {f'{node.module}.{a.name}' for a in node.names}
    return names


def test_compare_does_not_import_run():
    """``run`` imports ``compare``; ``compare`` starts ``run`` by its name only (nor does the
    child module it starts it with import either)."""
    assert 'mmdavpt_lab.compare' in _imports(osp.join(REPO, 'mmdavpt_lab', 'run.py'))
    for module in ('compare', 'child'):
        imported = _imports(osp.join(REPO, 'mmdavpt_lab', f'{module}.py'))
        assert 'mmdavpt_lab.run' not in imported, module
    assert not {'mmdavpt_lab.compare', 'mmdavpt_lab.run'} & _imports(
        osp.join(REPO, 'mmdavpt_lab', 'child.py'))


def test_main_in_child_runs_the_module_main_with_its_output_appended(tmp_path):
    """In a process of its own (it redirects the process's output): the named module's
    ``main(argv)``, in ``cwd``, its output appended to the log."""
    module = tmp_path / 'fake_run_module.py'
    module.write_text('import os\n\ndef main(argv):\n    print("argv", argv, os.getcwd())\n')
    log = tmp_path / 'run.out'
    log.write_text('earlier\n')
    code = (f'import sys; sys.path.insert(0, {str(tmp_path)!r}); '
            'from mmdavpt_lab.child import main_in_child; '
            f'main_in_child("fake_run_module", ["a", "b"], {str(log)!r}, 1, {str(tmp_path)!r})')
    subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True)
    assert log.read_text() == f"earlier\nargv ['a', 'b'] {tmp_path}\n"


def test_a_run_process_that_dies_before_its_log_is_named(tmp_path):
    """A script that calls the comparison without the ``__main__`` guard kills the forked
    process before it opens its log: a RuntimeError that says so, not a FileNotFoundError."""
    script = tmp_path / 'no_guard.py'
    script.write_text(
        'from mmdavpt_lab.compare import run_process\n'
        f'run_process(["c.py", "--work-dir", "w"], {str(tmp_path / "run.out")!r}, 1, '
        f'{str(tmp_path)!r})\n')
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'before it wrote' in proc.stderr and 'FileNotFoundError' not in proc.stderr
