"""The package's layers, read from the source (``ast``; nothing is imported): dependencies run
one way, utils -> models -> engine, and the package never imports the lab (docs/architecture.md).

Every import statement counts, a function's own included: an import deferred to call time is
still a dependency.
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

REPO = Path(__file__).resolve().parents[1]


def module_files(package: str) -> Dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` (a folder of the repo)."""
    out = {}
    for path in sorted((REPO / package).rglob('*.py')):
        parts = path.relative_to(REPO).with_suffix('').parts
        if parts[-1] == '__init__':
            parts = parts[:-1]
        out['.'.join(parts)] = path
    return out


def imported_modules(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The modules ``name`` (in ``path``) imports: ``from X import y`` counts as ``X.y`` where
    that is a module of ``known``, else as ``X``; relative imports are resolved."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                source = '.'.join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                full = f'{source}.{alias.name}'
                out.add(full if full in known else source)
    return out


def import_graph(package: str) -> Dict[str, Set[str]]:
    """Module -> the modules of the repository's packages it imports."""
    files = module_files(package)
    known = set(files) | set(module_files('mmdavpt')) | set(module_files('mmdavpt_lab'))
    return {name: {m for m in imported_modules(name, path, known)
                   if m.split('.')[0] in ('mmdavpt', 'mmdavpt_lab')}
            for name, path in files.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module, or of one that imports
    itself (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope='module')
def graph():
    return import_graph('mmdavpt')


def edges(graph, source_prefix: str, target_prefix: str) -> List[str]:
    def under(module: str, prefix: str) -> bool:
        return module == prefix or module.startswith(prefix + '.')

    return sorted(f'{a} -> {b}' for a, targets in graph.items() if under(a, source_prefix)
                  for b in targets if under(b, target_prefix))


def test_the_graph_sees_the_imports_it_should(graph):
    """The reader itself: relative, ``from package import module`` and deferred imports."""
    assert 'mmdavpt.engine.hooks.mapping_hook' in graph['mmdavpt.engine.hooks']  # relative
    assert 'mmdavpt.models.backbones.tuned_only' in graph['mmdavpt.models.backbones.davpt_vit']
    # a deferred import (inside load_pretrained)
    assert 'mmdavpt.utils.ckpt_convert' in graph['mmdavpt.models.backbones.davpt_vit']
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert cycles({'a': {'a'}, 'b': set()}) == [['a']]


def test_no_import_cycle_in_the_package(graph):
    assert cycles(graph) == []


def root_imports(graph, source_prefix: str) -> List[str]:
    """Imports of the package root (``import mmdavpt``), which imports every layer."""
    return [e for e in edges(graph, source_prefix, 'mmdavpt') if e.endswith(' -> mmdavpt')]


def test_models_import_neither_the_engine_nor_the_package_root(graph):
    """A model module builds on utils and the registry only: the engine (hooks) calls models,
    never the reverse."""
    assert edges(graph, 'mmdavpt.models', 'mmdavpt.engine') == []
    assert root_imports(graph, 'mmdavpt.models') == []


def test_utils_import_neither_models_nor_engine(graph):
    assert edges(graph, 'mmdavpt.utils', 'mmdavpt.models') == []
    assert edges(graph, 'mmdavpt.utils', 'mmdavpt.engine') == []
    assert root_imports(graph, 'mmdavpt.utils') == []


def test_the_package_never_imports_the_lab(graph):
    assert edges(graph, 'mmdavpt', 'mmdavpt_lab') == []


def test_the_tuned_only_logic_lives_with_the_backbone(graph):
    """The hook only calls it: the format and its loading are in the models layer."""
    hook = 'mmdavpt.engine.hooks.tuned_only_checkpoint_hook'
    assert 'mmdavpt.models.backbones' in graph[hook]
    assert 'mmdavpt.models.backbones.tuned_only' in graph['mmdavpt.models.backbones.davpt_vit']
    tree = ast.parse((REPO / 'mmdavpt' / 'engine' / 'hooks' /
                      'tuned_only_checkpoint_hook.py').read_text())
    defined = [n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
    assert defined == ['TunedOnlyCheckpointHook']
