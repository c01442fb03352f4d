"""Go from source on the pinned seed: gccgo-12 builds Go 1.19.8, which builds and runs a program.

Marked slow (the stage compiles Go's whole toolchain: 28 min measured on 2 loaded cores) and
network (the seed's .debs and go1.19.8's source come from deb.debian.org once). Everything lands in
the persistent test store (TDX_TEST_STORE, default /var/tmp/tdx-test-store), so a second run is a
lookup. The stages above (1.21.13 -> 1.24.4) have no test yet: docs/bootstrap.md says why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootstrap.seed import realise_seed
from tdxstore.builders.go import GoBuild
from tdxstore.builders.gosource import GoFromSource
from tdxstore.sandbox import process
from tdxstore.store.path import StorePath
from tdxstore.store.realise import realise
from tdxstore.store.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.needs_bwrap]
HELLO = ('package main\n\nimport (\n\t"fmt"\n\t"runtime"\n)\n\n'
         'func main() { fmt.Println("hello from", runtime.Version()) }\n')


@pytest.fixture(scope="module")
def seed(shared: Store) -> StorePath:
    return realise_seed(shared)


def _hello(where: Path) -> Path:
    where.mkdir(parents=True)
    (where / "go.mod").write_text("module example.com/hello\n\ngo 1.19\n")
    (where / "main.go").write_text(HELLO)
    return where


def _build_and_run(shared: Store, seed: StorePath, chain: GoFromSource, tmp_path: Path) -> str:
    app = _hello(tmp_path / chain.version)
    drv = GoBuild(src=str(app), output="/usr/local/bin/hello", compiler=chain).derivation_on(shared, seed)
    realise(shared, [drv])
    binary = shared.real_path(drv.out) / "usr/local/bin/hello"
    return process.run([os.fspath(binary)], what="hello").stdout.decode()


def test_gccgo_builds_go_1_19_which_builds_a_program(shared: Store, seed: StorePath, tmp_path: Path) -> None:
    chain = GoFromSource(version="1.19.8", root=seed)
    stages = chain.derivations()
    assert [d.name for d in stages] == ["go-gccgo-12", "go-1.19.8"]
    realise(shared, list(stages))
    goroot = shared.real_path(stages[-1].out)
    assert (goroot / "VERSION").read_text().startswith("go1.19.8")
    assert _build_and_run(shared, seed, chain, tmp_path) == "hello from go1.19.8\n"

