"""Fixtures shared by store and realise tests: a fresh store and a busybox root as a store path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.busybox import make_busybox_root
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store


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
