"""The Go chain from source above 1.19: the whole default chain, Go built by Go, and that stage bit for bit.

Marked slow and network like test_bootstrap_go.py: everything is realised in the persistent test
store (TDX_TEST_STORE), so once the stages are there a second run is a lookup (the measured times are
in docs/bootstrap.md). The bit-for-bit check builds go-1.22.12 again in an empty store holding only
what the stage reads (the seed, go-1.21.13, its sources), imported from the shared store through a
bundle, and compares NAR hashes; that store (about 3 GB) is removed with `tmp_path` when it passes.
"""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

import pytest

from bootstrap.seed import realise_seed, seed_sets
from tdxstore.builders.gosource import GoFromSource
from tdxstore.store.bundle import export_bundle, import_bundle
from tdxstore.store.derivation import Derivation
from tdxstore.store.graph import NodeKind, build_graph
from tdxstore.store.path import StorePath
from tdxstore.store.realise import closure_of, load_derivation, realise
from tdxstore.store.store import Store
from tests.e2e.gohello import build_and_run_hello

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.needs_bwrap]


@pytest.fixture(scope="module")
def seed(shared: Store) -> StorePath:
    return realise_seed(shared)


def _goroot_version(store: Store, stage: Derivation) -> str:
    return (store.real_path(stage.out) / "VERSION").read_text().splitlines()[0]


def test_the_whole_chain_from_gccgo_builds_go_1_24_which_builds_a_program(
        shared: Store, seed: StorePath, tmp_path: Path) -> None:
    chain = GoFromSource(version="1.24.4", root=seed)
    stages = chain.derivations()
    assert [d.name for d in stages] == ["go-gccgo-12", "go-1.21.13", "go-1.22.12", "go-1.24.4"]
    for below, stage in itertools.pairwise(stages):
        assert stage.env_dict()["GOROOT_BOOTSTRAP"] == below.out.logical and stage.root == seed
    realise(shared, list(stages))
    assert [_goroot_version(shared, s) for s in stages[1:]] == ["go1.21.13", "go1.22.12", "go1.24.4"]
    assert build_and_run_hello(shared, seed, chain, tmp_path) == "hello from go1.24.4\n"

    def expand(path: StorePath) -> Derivation | None:  # as `tdx graph` does: the seed down to its .debs
        deriver = shared.query(path).deriver if shared.is_valid(path) else None
        return load_derivation(shared, deriver) if deriver is not None and shared.is_valid(deriver) else None

    by_kind: dict[NodeKind, list[str]] = {}
    for n in build_graph(stages[-1], expand):
        by_kind.setdefault(n.kind, []).append(n.path.name)
    assert by_kind[NodeKind.BUILT] == ["bootstrap-seed", "go-gccgo-12", "go-1.21.13", "go-1.22.12", "go-1.24.4"]
    assert len(by_kind[NodeKind.BINARY]) == len(seed_sets()[0].packages)  # the seed's pinned .debs, nothing else
    assert all(name.endswith(".deb") for name in by_kind[NodeKind.BINARY])
    assert by_kind[NodeKind.ADDED] == ["busybox-bootstrap-root"]
    assert len(by_kind[NodeKind.SOURCE]) == 4


def test_go_1_21_builds_go_1_22_from_source_which_builds_a_program(
        shared: Store, seed: StorePath, tmp_path: Path) -> None:
    chain = GoFromSource(version="1.22.12", root=seed)
    *below, top = chain.derivations()
    assert below[-1].name == "go-1.21.13" and top.env_dict()["GOROOT_BOOTSTRAP"] == below[-1].out.logical
    assert top.env_dict()["SRC_FORMAT"] == "deb"  # Debian's golang-1.22-src tree, built offline by Go 1.21
    realise(shared, [*below, top])
    assert _goroot_version(shared, below[-1]) == "go1.21.13" and _goroot_version(shared, top) == "go1.22.12"
    assert (shared.real_path(top.out) / "pkg/tool/linux_amd64/compile").is_file()
    assert build_and_run_hello(shared, seed, chain, tmp_path) == "hello from go1.22.12\n"


def _copy(src: Store, dest: Store, roots: list[StorePath]) -> None:
    """Export `roots` (with their closures) from `src` into `dest` through a pipe: no bundle file on disk."""
    read_end, write_end = os.pipe()
    failure: list[BaseException] = []

    def export() -> None:
        try:
            with open(write_end, "wb") as out:
                export_bundle(src, roots, out, level=1)
        except BaseException as e:  # re-raised in the test's thread
            failure.append(e)

    writer = threading.Thread(target=export)
    writer.start()
    try:
        with open(read_end, "rb") as inp:
            import_bundle(dest, inp)
    finally:
        writer.join()
    if failure:
        raise failure[0]


def test_the_go_1_22_stage_is_bit_for_bit_in_an_empty_store(shared: Store, seed: StorePath, tmp_path: Path) -> None:
    top = GoFromSource(version="1.22.12", root=seed).derivation()
    realise(shared, [top])  # a lookup once the stage is in the shared store
    below = [d for d in closure_of([top]) if d is not top]
    assert "go-1.21.13" in {d.name for d in below}
    fresh = Store.open(tmp_path / "fresh")
    try:
        _copy(shared, fresh, [seed, *(d.out for d in below)])
        assert not fresh.is_valid(top.out)
        built = realise(fresh, [top]).built
        assert [d.name for d in built] == ["go-1.22.12"]  # everything below was imported, not rebuilt
        assert fresh.query(top.out).nar_hash == shared.query(top.out).nar_hash
        assert fresh.query(top.out).nar_size == shared.query(top.out).nar_size
    finally:
        fresh.close()
