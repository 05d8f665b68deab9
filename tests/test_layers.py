"""The package's layering (docs/architecture.md): space → genome → engine → filters → evolution →
search, each layer importing only itself and the layers below it, no import cycle between
modules, and no torch / MMDetection / bridge import anywhere in ``jaxloss``.

Checked by reading the source (``ast``), imports inside functions included, so that a lazy import
cannot hide a dependency on a higher layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "jaxloss"
LAYERS = ["errors", "space", "genome", "engine", "filters", "evolution", "search"]
FORBIDDEN = ("torch", "mmdet", "mmengine", "mmcv", "bridge")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) of every import in a file; ``from a import b``
    counts as a.b when a.b is a module of the package, else as a."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        level = id(node) in top
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.append((full if full in MODULES else node.module, node.lineno, level))
    return found


FILES = sorted(ROOT.rglob("*.py"))
MODULES = {_module_name(p) for p in FILES}


def _layer(module: str) -> int | None:
    """Layer index of a jaxloss module (None: the top-level package ``jaxloss`` itself)."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def test_every_module_belongs_to_a_layer():
    stray = [m for m in MODULES if m != "jaxloss" and _layer(m) is None]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: _module_name(p))
def test_a_module_imports_only_its_layer_and_those_below(path):
    me = _module_name(path)
    mine = _layer(me)
    wrong = []
    for name, line, _ in _imports(path):
        if name.split(".")[0] in FORBIDDEN:
            wrong.append(f"line {line}: {name} (jaxloss never imports the PyTorch side)")
        if mine is None or not name.startswith("jaxloss"):
            continue
        theirs = _layer(name)
        if theirs is None:
            wrong.append(f"line {line}: {name} (the top-level package, which imports everything)")
        elif theirs > mine:
            wrong.append(f"line {line}: {name} (layer {LAYERS[theirs]} is above {LAYERS[mine]})")
    assert not wrong, f"{me}: " + "; ".join(wrong)


def test_no_import_cycle_between_modules():
    graph = {_module_name(p): {n for n, _, top in _imports(p) if top and n in MODULES}
             for p in FILES}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, f"import cycles: {cycles}"
