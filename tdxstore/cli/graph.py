"""`tdx graph TARGET`: the chain of store paths behind a target, as text or Graphviz dot (L5).

Parses the target (a FILE.py[:ATTR], a .drv path, or an output path whose deriver is recorded),
calls `store.graph` and prints; it builds nothing and reaches no network. A root or input given as a
plain path is followed down to the derivation the store recorded for it (so the seed shows its .debs).
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("graph")(graph_cmd)


def graph_cmd(
    target: str = typer.Argument(..., help="FILE.py[:ATTR], a .drv store path, or an output path built here."),
    dot: bool = typer.Option(False, "--dot", help="Print Graphviz dot instead of text."),
) -> None:
    """Show the store paths behind TARGET, marking binary seeds, sources and built outputs."""
    from tdxstore.cli.app import open_store
    from tdxstore.errors import StoreError
    from tdxstore.store.derivation import Derivation
    from tdxstore.store.evaluate import resolve_targets
    from tdxstore.store.graph import build_graph, render_dot, render_text
    from tdxstore.store.path import StorePath, split_logical
    from tdxstore.store.realise import load_derivation

    store = open_store()
    if split_logical(target) is not None and not target.endswith(".drv"):
        deriver = store.query(store.parse(target)).deriver
        if deriver is None:
            raise StoreError(f"{target} was not built by a derivation, so it has no graph",
                             hint="give the .drv path or the FILE.py[:ATTR] that defines it", code="no-deriver")
        drvs = [load_derivation(store, deriver)]
    else:
        drvs, _ = resolve_targets(store, target)
    def expand(path: StorePath) -> Derivation | None:
        """The recorded deriver of a path realised on its own (a build root, the seed), if its .drv is here."""
        if not store.is_valid(path):
            return None
        deriver = store.query(path).deriver
        return load_derivation(store, deriver) if deriver is not None and store.is_valid(deriver) else None

    for drv in drvs:
        nodes = build_graph(drv, expand)
        print(render_dot(nodes) if dot else render_text(nodes), end="")
