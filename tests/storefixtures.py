"""Fixtures shared by store and realise tests: a fresh store, a busybox root as a store path, and the
persistent test store (TDX_TEST_STORE) that the network and slow tests share between runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.busybox import make_busybox_root
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

TEST_STORE = Path(os.environ.get("TDX_TEST_STORE", "/var/tmp/tdx-test-store"))


@pytest.fixture(scope="module")
def shared() -> Iterator[Store]:
    """The persistent test store: toolchains, indexes and build roots fetched once, reused by later runs."""
    s = Store.open(TEST_STORE)
    yield s
    s.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "tdx")
    yield s
    s.close()


@pytest.fixture(scope="session")
def busybox_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_root(tmp_path_factory.mktemp("bbroot") / "root")


@pytest.fixture
def root(store: Store, busybox_tree: Path) -> StorePath:
    return store.add_path(busybox_tree, "busybox-root")
