"""A lost database (empty or missing `db.sqlite`, or rows gone) never costs a path.

The store says it is damaged instead of looking empty, `verify --repair-db` rebuilds the database
from disk, and gc refuses to run while a root points at a path the database does not know.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tdxstore.errors import StoreError
from tdxstore.store.gc import add_root, collect_garbage
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

REPO = Path(__file__).parents[3]


def tdx(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *args], cwd=REPO, text=True,
                          env={**os.environ, "TDX_HOME": str(home)}, capture_output=True, timeout=120)


def _populate(tmp_path: Path) -> tuple[Path, StorePath, StorePath, StorePath]:
    """A store with a rooted path that references another one, and an unrooted path."""
    home = tmp_path / "home"
    store = Store.open(home)
    lib = store.add_bytes("lib", b"library\n")
    app = store.add_text("app", f"uses {lib.logical}\n".encode(), [lib])
    junk = store.add_bytes("junk", b"garbage\n")
    add_root(store, tmp_path / "result", app)
    store.close()
    return home, lib, app, junk


def _lose_database(home: Path, how: str) -> None:
    db = home / "db.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if how == "empty":
        db.write_bytes(b"")
    else:
        db.unlink()


@pytest.mark.parametrize("how", ["empty", "missing"])
def test_lost_database_is_damage_not_an_empty_store(tmp_path: Path, how: str) -> None:
    home, lib, app, junk = _populate(tmp_path)
    _lose_database(home, how)
    with pytest.raises(StoreError) as e:
        Store.open(home)
    assert e.value.code == "db-missing"
    for args in (["store", "ls"], ["store", "gc"], ["store", "verify"]):
        r = tdx(home, *args)
        errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
        assert r.returncode == 1 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"is {how}" in errors[0] and "damaged" in errors[0]
        assert "--repair-db" in r.stderr
    for sp in (lib, app, junk):
        assert (home / "store" / sp.base_name).exists()

    r = tdx(home, "store", "verify", "--repair-db")
    assert r.returncode == 0, r.stderr
    assert "3 paths registered" in r.stderr and "checked 3 paths" in r.stderr
    assert sorted(tdx(home, "store", "ls").stdout.split()) == sorted(p.logical for p in (lib, app, junk))
    store = Store.open(home)
    assert store.query(app).references == (lib,)  # recovered by scanning
    report = collect_garbage(store)
    assert report.deleted == (junk,)
    assert store.is_valid(app) and store.is_valid(lib)
    store.close()


def test_gc_never_deletes_a_rooted_path_the_database_forgot(tmp_path: Path) -> None:
    home, lib, app, junk = _populate(tmp_path)
    with sqlite3.connect(home / "db.sqlite") as conn:  # rows lost, file intact (an old backup restored)
        conn.execute("DELETE FROM refs")
        conn.execute("DELETE FROM valid_paths WHERE path = ?", (app.base_name,))
    store = Store.open(home)
    with pytest.raises(StoreError) as e:
        collect_garbage(store)
    assert e.value.code == "db-incomplete"
    store.close()
    r = tdx(home, "store", "gc")
    assert r.returncode == 1 and "not in the database" in r.stderr and "--repair-db" in r.stderr
    for sp in (lib, app, junk):
        assert (home / "store" / sp.base_name).exists()


def test_fresh_store_and_leftovers_of_a_killed_add_are_not_damage(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Store.open(home).close()  # a new store: empty directory, new database
    (home / "store" / ("0" * 32 + "-leftover")).mkdir()  # an add killed between rename and register
    store = Store.open(home)
    assert store.db.all_paths() == []
    assert collect_garbage(store).garbage == ("0" * 32 + "-leftover",)
    store.close()
