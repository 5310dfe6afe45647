"""The layers of the package hold (docs/architecture.md): import-linter contracts, no import
cycle, imports at the top of every module, argument parsing only in the command line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mis"

#: Imports allowed inside functions: the lazy boundary that keeps torch out of the estimators
#: (the discriminator in ``mis.security``, ``RQRecorder`` in ``mis``), and optional extras
#: imported where they are used.
LAZY_BOUNDARY = {
    ("mis", "mis.train.rq_recorder"),
    ("mis", "mis.studies.audit.own"),
    ("mis.security", "mis.security._discriminator"),
}
OPTIONAL_EXTRAS = ("dask", "distributed", "rdkit", "datamol", "sklearn", "lightning")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text(), filename=str(path))


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The modules an import statement may load (``from a import b``: ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module
    return [source] + [f"{source}.{a.name}" for a in node.names]


def test_import_linter_contracts_hold():
    # in a subprocess: import-linter reconfigures logging (dictConfig disables our loggers)
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_no_import_cycles():
    graph = grimp.build_graph("mis", include_external_packages=False)
    modules = sorted(graph.modules)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in modules}
    for a, b in LAZY_BOUNDARY:
        edges[a] = edges[a] - {b}
    # Tarjan's strongly connected components: any component of size > 1 is a cycle
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in modules:
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


def test_imports_sit_at_the_top_of_every_module():
    late = []
    for name, path, tree in _modules():
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in top:
                continue
            targets = _imported(node, name, path.name == "__init__.py")
            ok = any((name, t) in LAZY_BOUNDARY for t in targets) or all(
                t.split(".")[0] in OPTIONAL_EXTRAS for t in targets
            )
            if not ok:
                late.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {targets}")
    assert not late, "imports inside functions:\n" + "\n".join(late)


def test_only_the_command_line_parses_arguments():
    users = [
        str(path.relative_to(ROOT))
        for name, path, tree in _modules()
        if name != "mis.cli"
        and any(
            "argparse" in _imported(n, name, path.name == "__init__.py")
            for n in ast.walk(tree)
            if isinstance(n, (ast.Import, ast.ImportFrom))
        )
    ]
    assert not users, f"argparse outside mis/cli.py: {users}"


@pytest.mark.parametrize("module", ["mis.metrics", "mis.attacks", "mis.security", "mis.store"])
def test_estimators_do_not_import_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
