"""The `[build-root]` section of tdx.lock: requests, its TOML form (golden file), refusal of what is not locked."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w

from tdxstore.errors import PackageError
from tdxstore.packages.buildroot import (
    SECTION,
    BuildRootLock,
    LockedRoot,
    RootRequest,
    from_section,
    lock_roots,
    realise_root,
    to_section,
)
from tdxstore.packages.index import Mirrors
from tdxstore.packages.lock import LockedPackage, PackageSet, PackageSource
from tdxstore.store.store import Store

GOLDEN = Path(__file__).parents[2] / "data" / "builders" / "build-root.toml"
SOURCE = PackageSource("bookworm", ("main",), "debian", "20260711T101637Z")


def _set(name: str, sha: str) -> PackageSet:
    return PackageSet("amd64", (SOURCE,), (LockedPackage(name, "1.0-1", "amd64", "bookworm",
                                                         f"pool/main/x/{name}/{name}_1.0-1_amd64.deb", sha, 1000),))


def _lock() -> BuildRootLock:
    return BuildRootLock(_set("busybox-static", "aa" * 32), (
        LockedRoot(RootRequest(("golang-1.22-go/bookworm-backports",), "/usr/lib/go-1.22", "go-1.22"),
                   _set("golang-1.22-go", "bb" * 32)),
        LockedRoot(RootRequest(("libssl-dev", "build-essential")), _set("build-essential", "cc" * 32)),
    ))


def test_section_round_trips_and_matches_golden() -> None:
    text = tomli_w.dumps({SECTION: to_section(_lock())})
    assert text == GOLDEN.read_text()
    back = from_section(tomllib.loads(text)[SECTION], arch="amd64")
    assert back == _lock()
    assert back.get(RootRequest(("build-essential", "libssl-dev", "build-essential"))) is not None
    assert back.get(RootRequest(("build-essential",))) is None


def test_requests_are_sorted_and_deduplicated_so_equal_lists_share_a_root() -> None:
    assert RootRequest(("b", "a", "b")) == RootRequest(("a", "b"))
    with pytest.raises(PackageError) as err:
        RootRequest(())
    assert err.value.code == "lock-entry-invalid"


def test_a_lock_that_already_holds_every_request_resolves_nothing(store: Store) -> None:
    """No index is fetched (the mirror is unreachable on purpose): the old pins are kept as they are."""
    old = _lock()
    wanted = [RootRequest(("build-essential", "libssl-dev"))]
    new = lock_roots(store, Mirrors({"debian": "http://127.0.0.1:9"}), wanted, old)
    assert new.tools == old.tools and [r.request for r in new.roots] == wanted


def test_an_unlocked_request_is_refused_when_realised(store: Store) -> None:
    with pytest.raises(PackageError) as err:
        realise_root(store, _lock(), RootRequest(("cmake",)), Mirrors({"debian": "http://127.0.0.1:9"}))
    assert err.value.code == "lock-stale" and "cmake" in err.value.message


def test_malformed_section_is_one_error() -> None:
    with pytest.raises(PackageError) as err:
        from_section({"set": [{"arch": "amd64"}]})
    assert err.value.code == "lock-entry-invalid"
