"""Fixtures of the unit tests that use a signed Debian test archive (tests/debrepo.py): its signing key,
made once per session, and a server for whichever `archive` the test module or folder defines."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.debrepo import Archive, ArchiveServer, TestKey


@pytest.fixture(scope="session")
def test_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestKey]:
    key = TestKey(tmp_path_factory.mktemp("gnupg"))
    yield key
    key.close()


@pytest.fixture
def server(archive: Archive) -> Iterator[ArchiveServer]:
    """`archive` served over HTTP on 127.0.0.1 for the test, stopped after it."""
    srv = ArchiveServer(archive.root)
    yield srv
    srv.stop()
