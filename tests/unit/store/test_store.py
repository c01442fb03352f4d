"""The local store: content-addressed adds, validity, GC, deletion, verification, repair, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tdxstore.errors import StoreError, StorePathError
from tdxstore.store.gc import add_root, collect_garbage, delete_paths, roots
from tdxstore.store.nar import hash_path
from tdxstore.store.path import make_fixed_output_path
from tdxstore.store.store import Store
from tdxstore.store.verify import repair_database, verify_store


def _tree(tmp: Path) -> Path:
    d = tmp / "tree"
    (d / "sub" / "deep").mkdir(parents=True)
    (d / "a.txt").write_text("alpha\n")
    (d / "run.sh").write_text("#!/bin/sh\n")
    (d / "run.sh").chmod(0o755)
    (d / "empty").write_bytes(b"")
    (d / "sub" / "deep" / "x").write_text("x")
    (d / "link").symlink_to("a.txt")
    (d / "dangling").symlink_to("/nowhere")
    (d / "emptydir").mkdir()
    return d


def test_add_tree_is_content_addressed_and_idempotent(store: Store, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    sp = store.add_path(src, "tree")
    assert sp == make_fixed_output_path(hash_path(src).hex, "tree", recursive=True)
    info = store.query(sp)
    real = store.real_path(sp)
    assert (real / "a.txt").read_text() == "alpha\n"
    assert os.access(real / "run.sh", os.X_OK)
    assert not os.access(real / "a.txt", os.W_OK) or os.geteuid() == 0
    assert os.lstat(real / "a.txt").st_mode & 0o777 == 0o444
    assert os.lstat(real / "a.txt").st_mtime == 1
    assert info.ca and info.ca.startswith("fixed:r:sha256:")
    again = store.add_path(src, "tree")
    assert again == sp and store.query(sp).registration_time == info.registration_time


def test_add_flat_file(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "blob.bin"
    f.write_bytes(b"\x00\x01" * 1000)
    sp = store.add_flat(f)
    import hashlib

    assert sp == make_fixed_output_path(hashlib.sha256(f.read_bytes()).hexdigest(), "blob.bin", recursive=False)
    assert store.real_path(sp).read_bytes() == f.read_bytes()


def test_add_missing_source(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError) as e:
        store.add_path(tmp_path / "nope")
    assert e.value.code == "source-missing"


def test_parse_outside_store(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StorePathError) as e:
        store.parse(tmp_path)
    assert e.value.code == "not-in-store"


def test_query_invalid_path(store: Store) -> None:
    sp = make_fixed_output_path("0" * 64, "ghost", recursive=True)
    with pytest.raises(StoreError) as e:
        store.query(sp)
    assert e.value.code == "path-not-valid"


@pytest.mark.needs_bwrap
def test_unwritable_store(tmp_path: Path) -> None:
    """A store on a read-only mount (root ignores permission bits, so use bwrap's --ro-bind)."""
    home = tmp_path / "ro"
    Store.open(home).close()
    repo = Path(__file__).parents[3]
    code = ("import sys; from pathlib import Path; from tdxstore.cli.app import main; "
            "sys.exit(main(['store', 'ls']))")
    argv = ["bwrap", "--dev-bind", "/", "/", "--ro-bind", str(home), str(home), "--chdir", str(repo),
            sys.executable, "-c", code]
    r = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TDX_HOME": str(home)})
    assert r.returncode == 1, r.stderr
    assert "is not writable" in r.stderr and "hint: " in r.stderr


def test_unwritable_store_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "home").write_text("not a directory")
    with pytest.raises(StoreError) as e:
        Store.open(tmp_path / "home")
    assert e.value.code == "store-not-writable"


def test_gc_keeps_rooted_closure(store: Store, tmp_path: Path) -> None:
    a = store.add_bytes("a", b"a")
    b = store.add_bytes("b", b"b")
    c = store.add_text("c", f"uses {a}".encode(), [a])
    link = add_root(store, tmp_path / "result", c)
    assert roots(store) and link.is_symlink()
    (store.root / ("0" * 32 + "-leftover")).mkdir()  # an interrupted add: on disk, not registered
    dry = collect_garbage(store, dry_run=True)
    assert [p.name for p in dry.deleted] == ["b"] and store.is_valid(b)
    report = collect_garbage(store)
    assert [p.name for p in report.deleted] == ["b"] and report.garbage == ("0" * 32 + "-leftover",)
    assert report.freed_bytes > 0
    assert store.is_valid(a) and store.is_valid(c) and not store.is_valid(b)
    assert not store.real_path(b).exists()
    link.unlink()
    collect_garbage(store)
    assert not store.is_valid(a) and not store.is_valid(c)


def test_delete_refused_while_referenced_or_rooted(store: Store, tmp_path: Path) -> None:
    a = store.add_bytes("a", b"a")
    c = store.add_text("c", f"uses {a}".encode(), [a])
    with pytest.raises(StoreError) as e:
        delete_paths(store, [a])
    assert e.value.code == "path-in-use"
    add_root(store, tmp_path / "r", c)
    with pytest.raises(StoreError) as e:
        delete_paths(store, [c])
    assert e.value.code == "path-rooted"
    (tmp_path / "r").unlink()
    assert delete_paths(store, [c, a]) > 0
    assert not store.is_valid(a)


def test_verify_reports_corruption_and_missing(store: Store, tmp_path: Path) -> None:
    a = store.add_bytes("a", b"original")
    b = store.add_bytes("b", b"other")
    assert verify_store(store).ok
    real = store.real_path(a)
    real.chmod(0o644)
    real.write_bytes(b"tampered")
    from tdxstore._fs import remove_tree

    remove_tree(store.real_path(b))
    report = verify_store(store)
    assert [c[0] for c in report.corrupted] == [a]
    assert report.missing == (b,)


def test_repair_corrupt_database(store: Store, tmp_path: Path) -> None:
    a = store.add_bytes("a", b"a")
    c = store.add_text("c.drv", f"uses {a}".encode(), [a])
    home = store.home
    store.close()
    (home / "db.sqlite").write_bytes(b"garbage" * 100)
    for s in ("-wal", "-shm"):
        Path(f"{home}/db.sqlite{s}").unlink(missing_ok=True)
    with pytest.raises(StoreError) as e:
        Store.open(home)
    assert e.value.code == "db-corrupt"
    repair_database(home)
    fixed = Store.open(home)
    assert fixed.is_valid(a) and fixed.is_valid(c)
    assert fixed.query(c).references == (a,)
    assert fixed.query(c).ca and fixed.query(c).ca.startswith("text:")
    assert verify_store(fixed).ok
    fixed.close()


def test_concurrent_adds_give_one_path(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    home = tmp_path / "h"
    code = ("import sys; from pathlib import Path; from tdxstore.store.store import Store; "
            "print(Store.open(Path(sys.argv[1])).add_path(Path(sys.argv[2]), 'tree'))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(home), str(src)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[3]) for _ in range(6)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len({o.strip() for o, _ in outs}) == 1
    s = Store.open(home)
    assert len(s.db.all_paths()) == 1 and verify_store(s).ok
