"""Verified indexes: a good InRelease and Packages pass; bad signatures and tampered indexes are refused."""

from __future__ import annotations

import lzma
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tdxstore.errors import HashMismatchError, PackageError
from tdxstore.packages.index import entries, fetch_suite
from tdxstore.packages.release import parse_release, verify_inrelease
from tdxstore.store.store import Store
from tests.debrepo import Archive, ArchiveServer, TestKey


def test_good_suite_is_verified_and_parsed(store: Store, archive: Archive, server: ArchiveServer,
                                          test_key: TestKey) -> None:
    idx = fetch_suite(store, server.url, "testing", keyring=test_key.keyring)
    assert idx.source.timestamp == "20261130T120000Z"
    assert idx.source.archive == "debian" and idx.source.components == ("main",)
    names = {e.name: e.version for e in entries(store, idx)}
    assert names["hello"] == "2.10-3" and names["hello-extra"] == "1:0.5"
    # the Packages.xz is a fixed-output path: a second fetch downloads only the InRelease again
    before = sum(n for p, n in server.hits.items() if p.endswith("Packages.xz"))
    again = fetch_suite(store, server.url, "testing", keyring=test_key.keyring)
    assert again.packages == idx.packages
    assert sum(n for p, n in server.hits.items() if p.endswith("Packages.xz")) == before


def test_unknown_key_is_refused(store: Store, archive: Archive, server: ArchiveServer, tmp_path: Path) -> None:
    other = TestKey(tmp_path / "other")
    try:
        with pytest.raises(PackageError) as err:
            fetch_suite(store, server.url, "testing", keyring=other.keyring)
    finally:
        other.close()
    assert err.value.code == "bad-signature"


def test_altered_signed_text_is_refused(store: Store, archive: Archive, server: ArchiveServer,
                                        test_key: TestKey) -> None:
    inrelease = archive.root / "dists/testing/InRelease"
    inrelease.write_text(inrelease.read_text().replace("Codename: testing", "Codename: testinG"))
    with pytest.raises(PackageError) as err:
        fetch_suite(store, server.url, "testing", keyring=test_key.keyring)
    assert err.value.code == "bad-signature"


def test_tampered_packages_is_refused(store: Store, archive: Archive, server: ArchiveServer,
                                      test_key: TestKey) -> None:
    xz = archive.root / "dists/testing/main/binary-amd64/Packages.xz"
    xz.write_bytes(lzma.compress(lzma.decompress(xz.read_bytes()).replace(b"Version: 1.2", b"Version: 6.6")))
    with pytest.raises(HashMismatchError) as err:
        fetch_suite(store, server.url, "testing", keyring=test_key.keyring)
    assert err.value.code == "hash-mismatch"
    assert not list((store.home / "store").glob("*Packages.xz"))


def test_expired_release_and_wrong_suite_are_refused(store: Store, archive: Archive, server: ArchiveServer,
                                                     test_key: TestKey) -> None:
    archive.sign("testing", valid_until="Mon, 07 Dec 2026 12:00:00 UTC")
    later = datetime(2026, 12, 8, tzinfo=UTC)
    with pytest.raises(PackageError) as err:
        fetch_suite(store, server.url, "testing", keyring=test_key.keyring, now=later)
    assert err.value.code == "release-expired"
    # a mirror that serves testing-updates' Release under the name testing
    (archive.root / "dists/testing/InRelease").write_bytes(
        (archive.root / "dists/testing-updates/InRelease").read_bytes())
    with pytest.raises(PackageError) as err:
        fetch_suite(store, server.url, "testing", keyring=test_key.keyring)
    assert err.value.code == "release-wrong-suite"


def test_unsigned_text_around_the_signature_is_ignored(tmp_path: Path, archive: Archive,
                                                       test_key: TestKey) -> None:
    signed = (archive.root / "dists/testing/InRelease").read_text()
    f = tmp_path / "InRelease"
    f.write_text("SHA256:\n " + "0" * 64 + " 1 main/binary-amd64/Packages.xz\n" + signed)
    text = verify_inrelease(f, test_key.keyring)
    rel = parse_release(text, str(f))
    assert rel.file("main/binary-amd64/Packages.xz") is not None
    assert rel.file("main/binary-amd64/Packages.xz").sha256 != "0" * 64  # type: ignore[union-attr]


def test_missing_keyring(tmp_path: Path, archive: Archive) -> None:
    with pytest.raises(PackageError) as err:
        verify_inrelease(archive.root / "dists/testing/InRelease", tmp_path / "nope.gpg")
    assert err.value.code == "keyring-missing"
