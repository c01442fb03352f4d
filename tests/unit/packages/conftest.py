"""Fixtures for the Debian tests: small signed archives (the key and `server`: tests/unit/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.debrepo import Archive, ArchiveServer, Pkg, TestKey

PACKAGES = [
    Pkg("base-files", "13"),
    Pkg("ess", "1.0", depends="libfoo (>= 1.0)", essential=True),
    Pkg("libfoo", "1.2"),
    Pkg("hello", "2.10-3", depends="libfoo"),
    Pkg("hello-extra", "1:0.5"),
    Pkg("unused", "1.0"),
]
UPDATES = [Pkg("hello", "2.10-4", depends="libfoo")]


@pytest.fixture
def archive(tmp_path: Path, test_key: TestKey) -> Archive:
    a = Archive(tmp_path / "archive", test_key)
    a.add_suite("testing", PACKAGES)
    a.add_suite("testing-updates", UPDATES)
    return a


@pytest.fixture
def bootstrap_archive(tmp_path: Path, test_key: TestKey) -> Archive:
    """An archive whose busybox-static package holds this host's real static busybox."""
    a = Archive(tmp_path / "archive", test_key)
    a.add_suite("testing", [*PACKAGES, Pkg("busybox-static", "1:1.35.0-4",
                                           files={"bin/busybox": Path("/bin/busybox").read_bytes()})])
    return a


@pytest.fixture
def bootstrap_server(bootstrap_archive: Archive) -> Iterator[ArchiveServer]:
    srv = ArchiveServer(bootstrap_archive.root)
    yield srv
    srv.stop()
