"""Against Debian's real archive (deb.debian.org): verified bookworm indexes, apt's closure, a build root.

Network tests, marked `network`; the indexes and .deb files land in the persistent test store
(TDX_TEST_STORE, default /var/tmp/tdx-test-store), so after the first run only the InRelease is
downloaded again. The two-empty-stores build root check downloads ~100 MB twice and is `slow`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tdxstore.errors import PackageError
from tdxstore.packages import Mirrors, PackageSet, SuiteIndex, fetch_suite, resolve, verify_inrelease
from tdxstore.packages.index import entries
from tdxstore.packages.root import realise_build_root
from tdxstore.store.derivation import derivation
from tdxstore.store.path import StorePath
from tdxstore.store.realise import realise
from tdxstore.store.store import Store

pytestmark = [pytest.mark.network, pytest.mark.needs_bwrap]
MIRROR = "http://deb.debian.org/debian"
HELLO_C = b'#include <stdio.h>\nint main(void) { puts("hello from the build root"); return 0; }\n'


@pytest.fixture(scope="module")
def bookworm(shared: Store) -> SuiteIndex:
    return fetch_suite(shared, MIRROR, "bookworm")


def _compile_and_run(store: Store, root_sp: StorePath) -> str:
    src = store.add_bytes("hello.c", HELLO_C)
    drv = derivation("hello-c", "/bin/sh", ["-c", f"gcc -O2 -o $out/hello {src.logical} && $out/hello > $out/said"],
                     root=root_sp, inputs=[src])
    realise(store, [drv])
    return (store.real_path(drv.out) / "said").read_text()


def _lock(store: Store, idx: SuiteIndex, packages: list[str], base: tuple[str, ...] = ("?essential", "base-files")
          ) -> PackageSet:
    return resolve(store, [idx], packages, base=base)


def test_bookworm_verifies_against_debian_archive_keyring(shared: Store, bookworm: SuiteIndex) -> None:
    assert bookworm.release.codename == "bookworm"
    assert len(bookworm.source.timestamp) == 16
    names = {e.name for e in entries(shared, bookworm)}
    assert {"base-files", "libc6", "systemd"} <= names and len(names) > 50_000


def test_altered_debian_inrelease_is_refused(shared: Store, bookworm: SuiteIndex, tmp_path: Path) -> None:
    text = shared.real_path(bookworm.inrelease).read_text()
    assert verify_inrelease(shared.real_path(bookworm.inrelease)).startswith("Origin: Debian")
    forged = tmp_path / "InRelease"
    forged.write_text(text.replace("Label: Debian", "Label: Debiax", 1))
    with pytest.raises(PackageError) as err:
        verify_inrelease(forged)
    assert err.value.code == "bad-signature"


def test_mkosi_closure_and_mirror_independence(shared: Store, bookworm: SuiteIndex) -> None:
    pkgs = _lock(shared, bookworm, ["systemd", "udev", "dbus", "ca-certificates", "curl"])
    names = {p.name for p in pkgs.packages}
    assert {"base-files", "libc6", "systemd", "curl", "dpkg", "bash"} <= names
    assert "apt" not in names  # no stale package cache, no Recommends
    index = {(e.name, e.version): e.sha256 for e in entries(shared, bookworm)}
    assert all(index[(p.name, p.version)] == p.sha256 for p in pkgs.packages)
    # the same suite through another URL of the same archive: the same set
    other = fetch_suite(shared, "http://deb.debian.org/debian/", "bookworm")
    assert resolve(shared, [other], ["systemd", "udev", "dbus", "ca-certificates", "curl"]) == pkgs


def test_build_root_with_build_essential_compiles_c(shared: Store, bookworm: SuiteIndex) -> None:
    pkgs = _lock(shared, bookworm, ["build-essential"])
    tools = _lock(shared, bookworm, ["busybox-static"], base=())
    root_sp = realise_build_root(shared, pkgs, tools, Mirrors({"debian": MIRROR}))
    again = realise_build_root(shared, pkgs, tools, Mirrors({"debian": MIRROR + "/"}))
    assert again == root_sp  # one shared path per locked set, whatever the mirror
    assert _compile_and_run(shared, root_sp) == "hello from the build root\n"


@pytest.mark.slow
def test_build_root_is_the_same_nar_in_two_empty_stores(bookworm: SuiteIndex, shared: Store,
                                                        tmp_path: Path) -> None:
    pkgs = _lock(shared, bookworm, ["build-essential"])
    tools = _lock(shared, bookworm, ["busybox-static"], base=())
    hashes = []
    for n in ("a", "b"):
        s = Store.open(tmp_path / n)
        try:
            sp = realise_build_root(s, pkgs, tools, Mirrors({"debian": MIRROR}), jobs=4)
            hashes.append((sp, s.query(sp).nar_hash))
        finally:
            s.close()
    assert hashes[0] == hashes[1]
