"""Go from source on the pinned seed: gccgo-12 builds Go 1.19.8, which builds and runs a program.

Marked slow (the stage compiles Go's whole toolchain: 28 min measured on 2 loaded cores) and
network (the seed's .debs and go1.19.8's source come from deb.debian.org once). Everything lands in
the persistent test store (TDX_TEST_STORE, default /var/tmp/tdx-test-store), so a second run is a
lookup. The default chain up to 1.24.4 is tests/e2e/test_bootstrap_chain.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.seed import realise_seed
from tdxstore.builders.gosource import GoFromSource
from tdxstore.store.path import StorePath
from tdxstore.store.realise import realise
from tdxstore.store.store import Store
from tests.e2e.gohello import build_and_run_hello

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.needs_bwrap]


@pytest.fixture(scope="module")
def seed(shared: Store) -> StorePath:
    return realise_seed(shared)


def test_gccgo_builds_go_1_19_which_builds_a_program(shared: Store, seed: StorePath, tmp_path: Path) -> None:
    chain = GoFromSource(version="1.19.8", root=seed)
    stages = chain.derivations()
    assert [d.name for d in stages] == ["go-gccgo-12", "go-1.19.8"]
    realise(shared, list(stages))
    goroot = shared.real_path(stages[-1].out)
    assert (goroot / "VERSION").read_text().startswith("go1.19.8")
    assert build_and_run_hello(shared, seed, chain, tmp_path) == "hello from go1.19.8\n"

