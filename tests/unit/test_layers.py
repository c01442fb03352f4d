"""Imports point downward only (docs/architecture.md): a test walks every module's imports with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]

# package (or module) -> layer number; a module may import only from layers <= its own,
# and peers in the same layer only where listed in ALLOWED_PEERS.
LAYERS = {
    "tdxstore.errors": 0, "tdxstore._fs": 0, "tdxstore._lock": 0, "tdxstore._usercode": 0,
    "tdxstore.sandbox": 1, "tdxstore.fetch": 1,
    "tdxstore.store": 2,
    "tdxstore.builders": 3, "tdxstore.image": 3, "tdxstore.debian": 3, "tdxstore.lock": 3, "tdxstore.measure": 3,
    "tdxstore.cli": 4,
}
ALLOWED_PEERS = {
    ("tdxstore.image", "tdxstore.measure"),  # the image pipeline writes the measurement manifest
    ("tdxstore.image", "tdxstore.builders"),  # images install builder outputs (store types)
    ("tdxstore.fetch", "tdxstore.sandbox"),  # git runs through the one process runner
    ("tdxstore.debian", "tdxstore.builders"),  # .deb and index downloads are fetchurl derivations
}


def _unit(module: str) -> str | None:
    best = None
    for name in LAYERS:
        if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best)):
            best = name
    return best


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.rsplit(".", node.level)[0]
                found.append(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.append(node.module)
    return found


def test_no_upward_imports() -> None:
    bad = []
    for path in sorted((ROOT / "tdxstore").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        src = _unit(module)
        if src is None:
            continue
        for imp in _imports(path, module):
            dst = _unit(imp)
            if dst is None or dst == src:
                continue
            if LAYERS[dst] > LAYERS[src] or (LAYERS[dst] == LAYERS[src] and (src, dst) not in ALLOWED_PEERS):
                bad.append(f"{module} imports {imp} ({src} L{LAYERS[src]} -> {dst} L{LAYERS[dst]})")
    assert not bad, "\n".join(bad)


def test_facade_has_no_logic() -> None:
    for path in (ROOT / "tdx").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            assert isinstance(node, ast.Import | ast.ImportFrom | ast.Assign | ast.Expr | ast.AnnAssign), (
                f"{path}: only imports and __all__ belong in the facade, found {type(node).__name__}")
