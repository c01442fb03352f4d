"""GoFromSource as derivations (nothing is compiled): the chain's shape, exact propagation, the pinned sources.

The one network-free realise here is a source fetch from a server on 127.0.0.1 that serves other bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.builders.go import GoBuild
from tdxstore.builders.gosource import GO_STAGES, GoFromSource, GoSource
from tdxstore.errors import BuildError, HashMismatchError
from tdxstore.store.derivation import Derivation
from tdxstore.store.graph import NodeKind, build_graph
from tdxstore.store.path import StorePath
from tdxstore.store.realise import realise
from tdxstore.store.store import Store
from tests.fetchserver import FetchServer, serve


@pytest.fixture
def seeds(store: Store, tmp_path: Path) -> tuple[StorePath, StorePath]:
    """Two seeds that differ in one package version (a file's content stands for it)."""
    made = []
    for version in ("12.2.0-14", "12.2.0-15"):
        tree = tmp_path / version
        (tree / "var/lib/dpkg").mkdir(parents=True)
        (tree / "var/lib/dpkg/gcc-12.version").write_text(version)
        made.append(store.add_path(tree, "bootstrap-seed"))
    return made[0], made[1]


@pytest.fixture
def server() -> Iterator[FetchServer]:
    yield from serve()


def test_each_stage_is_built_by_the_one_below_from_a_pinned_source(seeds: tuple[StorePath, StorePath]) -> None:
    drvs = GoFromSource(version="1.24.4", root=seeds[0]).derivations()
    assert [d.name for d in drvs] == ["go-gccgo-12", "go-1.21.13", "go-1.22.12", "go-1.24.4"]
    pinned = {s.source.sha256 for s in GO_STAGES if s.source is not None}
    for below, stage in itertools.pairwise(drvs):
        assert stage.root == seeds[0] and stage.fixed is None  # offline: only fetches are fixed outputs
        env = stage.env_dict()
        assert env["GOROOT_BOOTSTRAP"] == below.out.logical and below in stage.inputs
        fetches = [i for i in stage.inputs if isinstance(i, Derivation) and i.fixed is not None]
        assert fetches and all(f.fixed is not None and f.fixed.sha256 in pinned for f in fetches)
        assert all(f.builder == "builtin:fetchurl" for f in fetches)
    debian_src = drvs[1].env_dict()
    assert debian_src["SRC_FORMAT"] == "deb" and "ZONEINFO_SRC" in debian_src
    assert 'printf "go%s" "$GO_VERSION" > VERSION' in drvs[1].args[1]  # what the stage writes is visible
    assert "ZONEINFO_SRC" not in drvs[3].env_dict()  # go1.24.4's tarball is complete


def test_a_seed_change_changes_every_stage_and_nothing_else_changes_anything(
        seeds: tuple[StorePath, StorePath]) -> None:
    a = GoFromSource(version="1.24.4", root=seeds[0]).derivations()
    again = GoFromSource(version="1.24", root=seeds[0]).derivations()
    b = GoFromSource(version="1.24.4", root=seeds[1]).derivations()
    assert [d.out for d in a] == [d.out for d in again]
    assert [d.drv_path for d in a] == [d.drv_path for d in again]
    assert not {d.out for d in a} & {d.out for d in b}


def test_upstream_urls_give_the_same_paths(seeds: tuple[StorePath, StorePath]) -> None:
    debian = GoFromSource(version="1.24.4", root=seeds[0]).derivations()
    upstream = GoFromSource(version="1.24.4", root=seeds[0], upstream=True).derivations()
    assert [d.out for d in debian] == [d.out for d in upstream]
    urls = {i.env_dict()["url"] for i in upstream[-1].inputs if isinstance(i, Derivation) and i.fixed}
    assert urls == {"https://go.dev/dl/go1.24.4.src.tar.gz"}


def test_the_chain_graph_has_one_seed_and_pinned_sources(seeds: tuple[StorePath, StorePath]) -> None:
    nodes = build_graph(GoFromSource(version="1.24.4", root=seeds[0]).derivation())
    by_kind: dict[NodeKind, list[str]] = {}
    for n in nodes:
        by_kind.setdefault(n.kind, []).append(n.path.name)
    assert by_kind[NodeKind.ADDED] == ["bootstrap-seed"]
    assert sorted(by_kind[NodeKind.SOURCE]) == [  # 1.19.8's tarball: the zoneinfo.zip Debian's trees lack
        "go1.19.8.src.tar.gz", "go1.24.4.src.tar.gz", "golang-1.21-src_1.21.13-1_bpo12+1_all.deb",
        "golang-1.22-src_1.22.12-3_bpo12+1_all.deb"]
    assert by_kind[NodeKind.BUILT] == ["go-gccgo-12", "go-1.21.13", "go-1.22.12", "go-1.24.4"]
    assert NodeKind.BINARY not in by_kind


def test_go_build_with_a_chain_compiler(store: Store, seeds: tuple[StorePath, StorePath], tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "go.mod").write_text("module example.com/hello\n\ngo 1.19\n")
    (app / "main.go").write_text('package main\n\nfunc main() { println("hello") }\n')
    chain = GoFromSource(version="1.19.8", root=seeds[0])
    drv = GoBuild(src=str(app), output="/usr/local/bin/hello", compiler=chain).derivation_on(store, seeds[1])
    top = chain.derivation()
    assert top in drv.inputs and drv.env_dict()["GOROOT"] == top.out.logical
    assert drv.root == seeds[1]  # the program builds on its own root; the chain on the seed
    assert {"go-gccgo-12", "go1.19.8.src.tar.gz", "go-1.19.8"} <= {d.name for d in drv.walk()}
    rootless = GoBuild(src=str(app), output="/usr/local/bin/hello", compiler=GoFromSource(version="1.19.8"))
    assert rootless.derivation_on(store, seeds[1]).env_dict()["GOROOT"] == chain.derivation(seeds[1]).out.logical


def test_a_chain_without_a_root_is_one_error() -> None:
    with pytest.raises(BuildError) as err:
        GoFromSource(version="1.22.12").derivations()
    assert err.value.code == "invalid-build"


def test_a_source_whose_bytes_differ_from_the_chain_is_a_hash_mismatch(store: Store, server: FetchServer) -> None:
    server.files["go.tgz"] = b"not go1.19.8\n"
    src = GoSource("go1.19.8.src.tar.gz", server.url("file/go.tgz"), GO_STAGES[1].source.sha256)  # type: ignore[union-attr]
    with pytest.raises(HashMismatchError) as err:
        realise(store, [src.fetch()])
    assert err.value.code == "hash-mismatch"
    assert err.value.message.startswith(f"hash mismatch for {server.url('file/go.tgz')}\n")  # spec §5.2's wording
    assert f"  Expected: sha256:{src.sha256}\n  Got:      sha256:" in err.value.message
    assert err.value.hint == "The remote content has changed. Verify the new content and update the hash."
    assert not store.is_valid(src.fetch().out)


def test_a_compiler_source_plugs_into_cbuild_as_its_top_stage(store: Store, seeds: tuple[StorePath, StorePath],
                                                              tmp_path: Path) -> None:
    """`compiler_source=` takes any chain (here Go's, the one chain that exists); its top stage's bin/
    goes first on PATH and the whole chain is below the build."""
    from tdxstore.builders.c import CBuild

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Makefile").write_text("all:\n\ttrue\n")
    chain = GoFromSource(version="1.24.4", root=seeds[0])
    drv = CBuild(src="./app/", artifacts={"Makefile": "/usr/share/x"}, compiler_source=chain).derivation_on(
        store, seeds[1], base=tmp_path)
    top = chain.derivation()
    assert top in drv.inputs
    assert drv.env_dict()["PATH"].startswith(f"{top.out.logical}/bin:")
    assert drv.root == seeds[1] and top.root == seeds[0]  # the chain keeps its own seed
    with pytest.raises(BuildError) as err:
        CBuild(src="./app/", artifacts={"a": "/x"}, compiler_source=chain, compiler=seeds[0])
    assert err.value.code == "invalid-build"
