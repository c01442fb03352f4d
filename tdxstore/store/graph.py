"""The chain of store paths behind a derivation, each marked by where its bytes come from (L3, pure).

`build_graph` walks a derivation's inputs and roots (no store access, nothing built) and gives
one node per path, inputs before their users. A node is `built` (a derivation ran), `source` or
`binary` (a fixed-output fetch: `.deb` files and fetches marked `kind=binary` are binaries, other
fetches sources) or `added` (a path put into the store as bytes, by no derivation); `expand` lets
a caller with a store go on below a path that was realised separately. Rendering as
text or Graphviz dot is deterministic, so an auditor can diff two graphs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from tdxstore.store.derivation import Derivation
from tdxstore.store.path import StorePath


class NodeKind(StrEnum):
    BINARY = "binary"  # fetched binary seed (a Debian package)
    SOURCE = "source"  # fetched source, pinned by hash
    ADDED = "added"    # bytes added to the store directly (a local tree, the busybox bootstrap root)
    BUILT = "built"    # the output of a derivation that ran


@dataclass(frozen=True, slots=True)
class Node:
    """One path of the graph; `root` and `inputs` are the paths it was built from (none for leaves)."""

    path: StorePath
    kind: NodeKind
    drv: StorePath | None = None
    root: StorePath | None = None
    inputs: tuple[StorePath, ...] = ()


def _kind(drv: Derivation) -> NodeKind:
    if drv.fixed is None:
        return NodeKind.BUILT
    declared = drv.env_dict().get("kind")
    if declared in (NodeKind.BINARY, NodeKind.SOURCE):
        return NodeKind(declared)
    return NodeKind.BINARY if drv.name.endswith(".deb") else NodeKind.SOURCE


#: Given a plain store path, the derivation that built it when that is known (a store's recorded
#: deriver), else None: the graph then goes on below paths that were realised on their own.
Expand = Callable[[StorePath], Derivation | None]


def build_graph(target: Derivation, expand: Expand | None = None) -> tuple[Node, ...]:
    """Every path behind `target` (itself last), each once, inputs before the paths built from them."""
    nodes: dict[StorePath, Node] = {}

    def visit(top: Derivation) -> None:
        for drv in top.walk():
            if drv.out in nodes:
                continue
            deps = [*drv.inputs, *([drv.root] if drv.root is not None else [])]
            for dep in deps:
                if isinstance(dep, StorePath) and dep not in nodes:
                    below = expand(dep) if expand is not None else None
                    if below is not None and below.out == dep:
                        visit(below)
                    else:
                        nodes[dep] = Node(dep, NodeKind.ADDED)
            kind = _kind(drv)
            inputs = tuple(sorted({(i.out if isinstance(i, Derivation) else i) for i in drv.inputs},
                                  key=lambda p: p.base_name))
            nodes[drv.out] = Node(drv.out, kind, drv.drv_path, drv.root_path,
                                  () if kind is not NodeKind.BUILT else inputs)

    visit(target)
    return tuple(nodes.values())


def summary(nodes: tuple[Node, ...]) -> str:
    counts = Counter(n.kind for n in nodes)
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in NodeKind)


def render_text(nodes: tuple[Node, ...]) -> str:
    """One block per path: `[kind] path`, then `root` and `input` lines naming what it was built from."""
    lines: list[str] = []
    for n in nodes:
        lines.append(f"[{n.kind}] {n.path}")
        if n.root is not None:
            lines.append(f"    root  {n.root}")
        lines.extend(f"    input {i}" for i in n.inputs)
    trusted = sum(n.kind in (NodeKind.BINARY, NodeKind.ADDED) for n in nodes)
    lines.append(f"# {len(nodes)} paths: {summary(nodes)}; trusted as bytes (binary or added): {trusted}")
    return "\n".join(lines) + "\n"


_DOT_STYLE = {NodeKind.BINARY: 'shape=box, style=filled, fillcolor="#f4cccc"',
              NodeKind.SOURCE: 'shape=note, style=filled, fillcolor="#d9ead3"',
              NodeKind.ADDED: 'shape=box, style="filled,dashed", fillcolor="#fff2cc"',
              NodeKind.BUILT: "shape=ellipse"}


def render_dot(nodes: tuple[Node, ...]) -> str:
    """Graphviz: an edge from each input (and root, dashed) to what was built from it."""
    lines = ["digraph tdx {", "  rankdir=BT;", '  node [fontname="monospace", fontsize=10];']
    for n in nodes:
        lines.append(f'  "{n.path}" [label="{n.path.name}\\n{n.path.hash_part[:8]} ({n.kind})", {_DOT_STYLE[n.kind]}];')
    for n in nodes:
        if n.root is not None:
            lines.append(f'  "{n.root}" -> "{n.path}" [style=dashed, label="root"];')
        lines.extend(f'  "{i}" -> "{n.path}";' for i in n.inputs)
    lines.append("}")
    return "\n".join(lines) + "\n"
