"""`store.graph` over a small chain: kinds, order, and the text and dot renderings (golden files).

Regenerate the golden files after an intended change with TDX_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tdxstore.store.graph import NodeKind, build_graph, render_dot, render_text
from tests import graphchain

DATA = Path(__file__).parents[2] / "data" / "graph"


def test_every_path_once_inputs_first_with_its_kind() -> None:
    nodes = build_graph(graphchain.stage2)
    kinds = {n.path.name: n.kind for n in nodes}
    assert kinds == {"busybox-bootstrap-root": NodeKind.ADDED, "gcc-12_12.2.0_amd64.deb": NodeKind.BINARY,
                     "seed": NodeKind.BUILT, "hello-1.0.tar.gz": NodeKind.SOURCE, "stage1": NodeKind.BUILT,
                     "stage2": NodeKind.BUILT}
    order = [n.path for n in nodes]
    for n in nodes:
        for dep in [*n.inputs, *([n.root] if n.root else [])]:
            assert order.index(dep) < order.index(n.path)
    last = nodes[-1]
    assert last.path == graphchain.stage2.out and last.drv == graphchain.stage2.drv_path
    assert last.root == graphchain.seed.out
    assert set(last.inputs) == {graphchain.stage1.out, graphchain.src.out}


@pytest.mark.parametrize(("name", "render"), [("chain.txt", render_text), ("chain.dot", render_dot)])
def test_rendering_matches_golden(name: str, render: object) -> None:
    text = render(build_graph(graphchain.stage2))  # type: ignore[operator]
    golden = DATA / name
    if os.environ.get("TDX_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_a_root_given_as_a_path_is_followed_to_its_recorded_derivation() -> None:
    from tdxstore.store.derivation import derivation

    on_path = derivation("stage3", "/bin/sh", ["-c", "true"], root=graphchain.seed.out, inputs=[graphchain.src])
    flat = {n.path.name: n.kind for n in build_graph(on_path)}
    assert flat["seed"] is NodeKind.ADDED and "gcc-12_12.2.0_amd64.deb" not in flat
    known = {graphchain.seed.out: graphchain.seed}
    deep = build_graph(on_path, known.get)
    kinds = {n.path.name: n.kind for n in deep}
    assert kinds["seed"] is NodeKind.BUILT and kinds["gcc-12_12.2.0_amd64.deb"] is NodeKind.BINARY
    assert [n.path.name for n in deep][-1] == "stage3"
    assert len(deep) == len({n.path for n in deep})
