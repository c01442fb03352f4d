"""mkosi's incremental caches per store: the least recently used beyond the newest few are removed,
never the one a build is using (held by a shared lock in another open file, as another process would)."""

from __future__ import annotations

import os
from pathlib import Path

from tdxstore._lock import FileLock
from tdxstore.mkosi.build import incremental_cache


def make_caches(root: Path, n: int) -> list[Path]:
    caches = []
    for i in range(n):
        d = root / f"incremental-{i:016x}"
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "f").write_bytes(b"x")
        (d / "sub").chmod(0o555)  # like mkosi's read-only trees: removal must still work
        os.utime(d, (1000 + i, 1000 + i))  # cache i used at time 1000+i
        caches.append(d)
    return caches


def test_least_recently_used_beyond_keep_are_removed(tmp_path: Path) -> None:
    caches = make_caches(tmp_path, 6)
    with incremental_cache(tmp_path, "incremental-new", keep=3) as d:
        assert d.is_dir() and d.name == "incremental-new"
    left = sorted(p.name for p in tmp_path.glob("incremental-*") if p.is_dir())
    # kept: the one in use now and the two most recently used before it
    assert left == sorted(["incremental-new", caches[5].name, caches[4].name])


def test_reusing_a_cache_makes_it_recent(tmp_path: Path) -> None:
    caches = make_caches(tmp_path, 4)
    with incremental_cache(tmp_path, caches[0].name, keep=2):
        pass
    left = {p.name for p in tmp_path.glob("incremental-*") if p.is_dir()}
    assert left == {caches[0].name, caches[3].name}


def test_a_cache_in_use_is_never_removed(tmp_path: Path) -> None:
    caches = make_caches(tmp_path, 4)
    busy = FileLock(tmp_path / f"{caches[0].name}.lock")
    assert busy.acquire(shared=True)
    try:
        with incremental_cache(tmp_path, "incremental-new", keep=1):
            pass
    finally:
        busy.release()
    left = {p.name for p in tmp_path.glob("incremental-*") if p.is_dir()}
    assert left == {"incremental-new", caches[0].name}
