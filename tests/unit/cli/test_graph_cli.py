"""`tdx graph` through the real CLI: the chains of tests/graphchain.py as text and dot, and its errors.

The Go chain's golden files change with any stage's derivation (its script, a pinned source): review
the diff, then regenerate them with `tdx graph tests/graphchain.py:go [--dot]`.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.cli.test_store_cli import REPO, one_error, tdx

DATA = REPO / "tests" / "data" / "graph"
CHAIN = str(REPO / "tests" / "graphchain.py")


def test_graph_text_and_dot(tmp_path: Path) -> None:
    r = tdx(tmp_path / "h", "graph", f"{CHAIN}:stage2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == (DATA / "chain.txt").read_text()
    r = tdx(tmp_path / "h", "graph", f"{CHAIN}:stage2", "--dot")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == (DATA / "chain.dot").read_text()


def test_graph_of_the_go_chain_shows_each_stage_built_by_the_one_below(tmp_path: Path) -> None:
    r = tdx(tmp_path / "h", "graph", f"{CHAIN}:go")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert text == (DATA / "go-chain.txt").read_text()
    built = [line.split("-", 1)[1] for line in text.splitlines() if line.startswith("[built]")]
    assert built == ["seed", "go-gccgo-12", "go-1.21.13", "go-1.22.12", "go-1.24.4"]
    assert text.endswith("# 11 paths: 1 binary, 4 source, 1 added, 5 built; trusted as bytes (binary or added): 2\n")
    r = tdx(tmp_path / "h", "graph", f"{CHAIN}:go", "--dot")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == (DATA / "go-chain.dot").read_text()


def test_graph_of_an_added_path_is_one_error(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_text("x\n")
    added = tdx(tmp_path / "h", "store", "add", str(src), "--name", "f").stdout.decode().strip()
    r = tdx(tmp_path / "h", "graph", added)
    assert r.returncode != 0
    assert "was not built by a derivation" in one_error(r)


def test_graph_of_something_that_is_no_derivation(tmp_path: Path) -> None:
    r = tdx(tmp_path / "h", "graph", f"{CHAIN}:busybox")
    assert r.returncode != 0
    assert "is not a derivation" in one_error(r)
