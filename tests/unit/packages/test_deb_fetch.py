"""Locked .deb files as fixed-output store paths: parallel fetch, tampering, superseded files, mirrors."""

from __future__ import annotations

import hashlib

import pytest

from tdxstore.errors import HashMismatchError, PackageError
from tdxstore.packages.debs import deb_derivations, realise_debs
from tdxstore.packages.index import Mirrors, fetch_suite
from tdxstore.packages.lock import PackageSet
from tdxstore.packages.resolve import resolve
from tdxstore.store.store import Store
from tests.debrepo import Archive, ArchiveServer, TestKey


def _lock(store: Store, server: ArchiveServer, key: TestKey) -> PackageSet:
    idx = [fetch_suite(store, server.url, s, keyring=key.keyring) for s in ("testing", "testing-updates")]
    return resolve(store, idx, ["hello", "hello-extra"], keyring=key.keyring)


def test_fetch_in_parallel_once(store: Store, server: ArchiveServer, test_key: TestKey) -> None:
    pkgs = _lock(store, server, test_key)
    seen: list[tuple[int, int]] = []
    paths = realise_debs(store, pkgs, Mirrors({"debian": server.url}), jobs=4,
                         progress=lambda d, t: seen.append((d, t)))
    assert sorted(paths) == ["base-files", "ess", "hello", "hello-extra", "libfoo"]
    for p in pkgs.packages:
        assert hashlib.sha256(store.real_path(paths[p.name]).read_bytes()).hexdigest() == p.sha256
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    hits = sum(n for path, n in server.hits.items() if path.endswith(".deb"))
    assert hits == 5
    assert realise_debs(store, pkgs, Mirrors({"debian": server.url})) == paths  # valid: no network
    assert sum(n for path, n in server.hits.items() if path.endswith(".deb")) == hits


def test_mirror_url_is_not_part_of_the_paths(store: Store, server: ArchiveServer, test_key: TestKey) -> None:
    pkgs = _lock(store, server, test_key)
    a = deb_derivations(pkgs, Mirrors({"debian": "http://deb.debian.org/debian"}))
    b = deb_derivations(pkgs, Mirrors({"debian": "https://mirror.example.org/debian/"}))
    assert {n: d.out for n, d in a.items()} == {n: d.out for n, d in b.items()}
    assert a["hello"].env != b["hello"].env  # only the URL differs


def test_deb_differing_from_the_lock_is_refused(store: Store, archive: Archive, server: ArchiveServer,
                                                test_key: TestKey) -> None:
    pkgs = _lock(store, server, test_key)
    hello = pkgs.get("hello")
    assert hello is not None
    deb = archive.root / hello.path
    deb.write_bytes(deb.read_bytes() + b"\0")
    with pytest.raises(HashMismatchError) as err:
        realise_debs(store, pkgs, Mirrors({"debian": server.url}), jobs=2)
    assert err.value.code == "hash-mismatch" and hello.sha256 in err.value.message
    from tdxstore.packages.debs import locked_paths

    assert not store.is_valid(locked_paths(pkgs, Mirrors({"debian": server.url}))["hello"])


def test_superseded_file_names_package_and_ways_out(store: Store, archive: Archive, server: ArchiveServer,
                                                    test_key: TestKey) -> None:
    pkgs = _lock(store, server, test_key)
    hello = pkgs.get("hello")
    assert hello is not None
    (archive.root / hello.path).unlink()
    with pytest.raises(PackageError) as err:
        realise_debs(store, pkgs, Mirrors({"debian": server.url}), jobs=1)
    e = err.value
    assert e.code == "package-superseded"
    assert "hello 2.10-4" in e.message and "TDX_DEBIAN_SNAPSHOT" in (e.hint or "")
    assert "tdx store add --flat" in (e.hint or "")


def test_snapshot_setting_fetches_by_the_locks_timestamp(store: Store, server: ArchiveServer,
                                                         test_key: TestKey) -> None:
    pkgs = _lock(store, server, test_key)
    drvs = deb_derivations(pkgs, Mirrors({"debian": server.url}, snapshot="https://snapshot.debian.org"))
    assert dict(drvs["hello"].env)["url"] == (
        "https://snapshot.debian.org/archive/debian/20261130T120000Z/pool/main/h/hello/hello_2.10-4_amd64.deb")
