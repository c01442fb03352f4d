"""Resolution with apt itself over verified local indexes, and the bad-input errors around it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tdxstore.errors import PackageError
from tdxstore.packages.index import SuiteIndex, fetch_suite
from tdxstore.packages.resolve import Request, resolve
from tdxstore.store.store import Store
from tests.debrepo import Archive, ArchiveServer, TestKey


def _indexes(store: Store, url: str, key: TestKey, suites: tuple[str, ...] = ("testing", "testing-updates")
             ) -> list[SuiteIndex]:
    return [fetch_suite(store, url, s, keyring=key.keyring) for s in suites]


def test_closure_of_essential_base_and_request(store: Store, server: ArchiveServer, test_key: TestKey) -> None:
    idx = _indexes(store, server.url, test_key)
    pkgs = resolve(store, idx, ["hello", "hello-extra"], keyring=test_key.keyring)
    got = {p.name: (p.version, p.suite) for p in pkgs.packages}
    assert got == {"base-files": ("13", "testing"), "ess": ("1.0", "testing"), "libfoo": ("1.2", "testing"),
                   "hello": ("2.10-4", "testing-updates"), "hello-extra": ("1:0.5", "testing")}
    hello = pkgs.get("hello")
    assert hello is not None and hello.path == "pool/main/h/hello/hello_2.10-4_amd64.deb"
    assert [s.suite for s in pkgs.sources] == ["testing", "testing-updates"]


def test_pinned_version_and_suite(store: Store, server: ArchiveServer, test_key: TestKey) -> None:
    idx = _indexes(store, server.url, test_key)
    assert resolve(store, idx, ["hello=2.10-3"], keyring=test_key.keyring).get("hello").version == "2.10-3"  # type: ignore[union-attr]
    assert resolve(store, idx, ["hello/testing"], keyring=test_key.keyring).get("hello").suite == "testing"  # type: ignore[union-attr]


def test_mirror_url_does_not_change_the_set(store: Store, archive: Archive, server: ArchiveServer,
                                           test_key: TestKey, tmp_path: Path) -> None:
    copy = tmp_path / "mirror2"
    shutil.copytree(archive.root, copy)
    other = ArchiveServer(copy)
    try:
        a = resolve(store, _indexes(store, server.url, test_key), ["hello"], keyring=test_key.keyring)
        b = resolve(store, _indexes(store, other.url, test_key), ["hello"], keyring=test_key.keyring)
    finally:
        other.stop()
    assert a == b and a.key == b.key


@pytest.mark.parametrize(("request_", "code", "in_hint"), [
    ("helo", "package-not-found", "hello"),
    ("hello=9.9", "version-not-available", "2.10-3 (testing)"),
    ("hello/bookworm-backports", "suite-not-in-sources", "bookworm-backports"),
    ("Hello World", "bad-package-request", "name=version"),
])
def test_bad_requests(store: Store, server: ArchiveServer, test_key: TestKey, request_: str, code: str,
                      in_hint: str) -> None:
    idx = _indexes(store, server.url, test_key)
    with pytest.raises(PackageError) as err:
        resolve(store, idx, [request_], keyring=test_key.keyring)
    assert err.value.code == code
    assert in_hint in (err.value.hint or "")


def test_unsatisfiable_dependency_is_apts_message(store: Store, archive: Archive, test_key: TestKey) -> None:
    from tests.debrepo import Pkg
    archive.add_suite("broken", [Pkg("base-files", "13"), Pkg("needy", "1", depends="ghost")])
    srv = ArchiveServer(archive.root)
    try:
        idx = _indexes(store, srv.url, test_key, ("broken",))
        with pytest.raises(PackageError) as err:
            resolve(store, idx, ["needy"], keyring=test_key.keyring)
    finally:
        srv.stop()
    assert err.value.code == "resolution-failed"
    assert "ghost" in (err.value.detail or "")


def test_request_parsing() -> None:
    assert Request.parse("libc6:amd64=2.36-9") == Request("libc6", "2.36-9", None, "amd64")
    assert Request.parse("hello/bookworm-backports").apt() == "hello/bookworm-backports"


def test_lock_packages_maps_suites_to_their_archive_mirror(store: Store, server: ArchiveServer,
                                                          test_key: TestKey) -> None:
    from tdxstore.packages.index import Mirrors
    from tdxstore.packages.resolve import lock_packages

    pkgs = lock_packages(store, Mirrors({"debian": server.url}), ["testing", "testing-updates"], ["hello"],
                         keyring=test_key.keyring)
    assert pkgs == resolve(store, _indexes(store, server.url, test_key), ["hello"], keyring=test_key.keyring)
    with pytest.raises(PackageError) as err:
        lock_packages(store, Mirrors({"debian": server.url}), ["testing-security"], ["hello"],
                      keyring=test_key.keyring)
    assert err.value.code == "no-mirror"
