"""Imports point downward only (docs/architecture.md): a test walks every module's imports with `ast`.

Every module of `tdxstore/` and `tdx/` must belong to a layer; a module imports only from strictly
lower layers or from its own package; and the module graph has no cycle. Imports under
`if TYPE_CHECKING:` are not run and do not count; imports inside functions do.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]

# package (or module) -> layer; a module may import its own package and strictly lower layers only.
LAYERS: dict[str, float] = {
    "tdxstore": 0, "tdxstore.errors": 0,
    "tdxstore._fs": 0.5, "tdxstore._lock": 0.5, "tdxstore._usercode": 0.5,  # helpers over errors
    "tdxstore.sandbox": 1, "tdxstore.measure": 1, "tdxstore.debian": 1,
    "tdxstore.fetch": 2, "tdxstore.secrets": 2, "tdxstore.mkosi": 2, "tdxstore.disk": 2, "tdxstore.boot": 2,
    "tdxstore.diff": 2,
    "tdxstore.store": 3,
    "tdxstore.builders": 4, "tdxstore.image": 4, "tdxstore.lock": 4, "tdxstore.packages": 4,
    "tdxstore.cli": 5,
    "tdx": 6,
}
PACKAGES = ("tdxstore", "tdx")
EXACT = {"tdxstore"}  # the package's own __init__ only: a new tdxstore/x.py must be given a layer


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def unit(module: str) -> str | None:
    best = None
    for name in LAYERS:
        inside = module.startswith(name + ".") and name not in EXACT
        if (module == name or inside) and (best is None or len(name) > len(best)):
            best = name
    return best


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:`."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                todo.extend(child.orelse)
                continue
            todo.append(child)
    return out


def imports(path: Path, module: str) -> set[str]:
    """The modules `module` imports at run time (`from pkg import sub` names the submodule)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in MODULES else source)
    return {i for i in found if i.split(".")[0] in PACKAGES}


GRAPH = {m: imports(p, m) for m, p in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    unmapped = sorted(m for m in MODULES if unit(m) is None)
    assert not unmapped, f"modules in no layer of LAYERS: {unmapped}"


def test_no_upward_or_peer_imports() -> None:
    bad = []
    for module, targets in sorted(GRAPH.items()):
        src = unit(module)
        assert src is not None
        for imp in sorted(targets):
            dst = unit(imp)
            if dst is None:
                bad.append(f"{module} imports {imp}, which is in no layer")
            elif dst != src and LAYERS[dst] >= LAYERS[src]:
                kind = "a peer" if LAYERS[dst] == LAYERS[src] else "upward"
                bad.append(f"{module} imports {imp} ({kind}: {src} L{LAYERS[src]} -> {dst} L{LAYERS[dst]})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over the module graph; each must be one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH.get(v, ())):
            if w not in MODULES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(MODULES):
        if module not in index:
            visit(module)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checks_catch_what_they_claim(tmp_path: Path) -> None:
    """The walker sees function-level imports, skips TYPE_CHECKING ones and resolves relative imports."""
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import tdxstore.cli\n"
                   "def f():\n    from tdxstore.store import store\n    from . import errors\n")
    assert imports(src, "tdxstore.x") == {"tdxstore.store.store", "tdxstore.errors"}
    assert unit("tdxstore.nothing_here") is None and unit("tdxstore.store.new") == "tdxstore.store"


def test_facade_has_no_logic() -> None:
    for path in (ROOT / "tdx").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            assert isinstance(node, ast.Import | ast.ImportFrom | ast.Assign | ast.Expr | ast.AnnAssign), (
                f"{path}: only imports and __all__ belong in the facade, found {type(node).__name__}")
