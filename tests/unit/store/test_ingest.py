"""One read per byte: `copy_and_hash`, `FlatNar` and the store adds built on them.

The copy must hash exactly as `hash_path` does, be canonical as `normalise_tree` leaves a tree, and
catch a source written to during the copy; the adds must read each input byte once, counted by the
kernel (`rchar` in /proc/self/io), not by wrapping any function.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tdxstore.errors import NarError, StorePathError
from tdxstore.store import nar
from tdxstore.store.normalise import normalise_tree
from tdxstore.store.path import make_fixed_output_path
from tdxstore.store.store import Store
from tdxstore.store.verify import verify_store
from tests.unit.store.test_nar import TREES, write

MiB = 1 << 20


def _canonical(path: Path) -> list[tuple[str, int, int]]:
    """(relative path, mode, mtime) of every node: what normalise_tree decides."""
    out = []
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files, ""]:
            p = os.path.join(root, name) if name else root
            st = os.lstat(p)
            out.append((os.path.relpath(p, path), st.st_mode, st.st_mtime_ns))
    if path.is_symlink() or path.is_file():
        st = os.lstat(path)
        out.append((".", st.st_mode, st.st_mtime_ns))
    return sorted(out)


@pytest.mark.parametrize("case", sorted(TREES))
def test_copy_hashes_like_hash_path_and_is_canonical(case: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    TREES[case](src)
    dest = tmp_path / "dest"
    digest = nar.copy_and_hash(src, dest)
    assert digest == nar.hash_path(src)
    assert nar.dump_bytes(dest) == nar.dump_bytes(src)
    before = _canonical(dest)
    normalise_tree(dest)
    assert _canonical(dest) == before  # already canonical: normalising changes nothing


def _read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_add_path_reads_each_byte_once(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "big"
    write(src / "a", os.urandom(24 * MiB + 3))
    write(src / "b", os.urandom(8 * MiB))
    total = 32 * MiB + 3
    before = _read_bytes()
    sp = store.add_path(src, "big")
    read = _read_bytes() - before
    assert total <= read < total * 1.1, read / total  # the old add read every byte 3 times
    assert sp == make_fixed_output_path(nar.hash_path(src).hex, "big", recursive=True)
    assert verify_store(store).ok


def test_add_flat_reads_each_byte_once(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "blob"
    write(src, os.urandom(16 * MiB + 5), 0o755)
    before = _read_bytes()
    sp = store.add_flat(src)
    read = _read_bytes() - before
    assert 16 * MiB <= read < 16 * MiB * 1.1, read / (16 * MiB)
    assert sp == make_fixed_output_path(hashlib.sha256(src.read_bytes()).hexdigest(), "blob", recursive=False)
    info = store.query(sp)
    assert info.nar_hash == f"sha256:{nar.hash_path(store.real_path(sp)).hex}"
    assert verify_store(store).ok


def test_a_file_growing_during_the_add_is_caught(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "log", os.urandom(3 * nar.CHUNK))
    grown = []

    def append_once(_chunk: object) -> None:  # a writer appending while the copy reads
        if not grown:
            grown.append(1)
            with open(src / "log", "ab") as f:
                f.write(b"more")

    with pytest.raises(NarError) as e:
        nar.copy_and_hash(src, tmp_path / "dest", contents=append_once)
    assert e.value.code == "source-changed"
    assert not (tmp_path / "dest").exists()  # the partial copy is gone
    store.add_path(src, "src")  # once the writer is done, the add succeeds


def test_a_small_file_rewritten_during_the_add_is_caught(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "conf", b"version=1\n")

    def rewrite(_chunk: object) -> None:
        os.utime(src / "conf", ns=(0, 5_000_000_000))  # same size, new mtime: a rewrite in place

    with pytest.raises(NarError) as e:
        nar.copy_and_hash(src, tmp_path / "dest", contents=rewrite)
    assert e.value.code == "source-changed"


def test_a_file_added_to_a_directory_during_the_add_is_caught(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "d" / "a", b"a")

    def add_sibling(_chunk: object) -> None:
        if not (src / "d" / "late").exists():
            (src / "d" / "late").write_bytes(b"late")

    with pytest.raises(NarError) as e:
        nar.copy_and_hash(src, tmp_path / "dest", contents=add_sibling)
    assert e.value.code == "source-changed"


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, nar.CHUNK + 3])
@pytest.mark.parametrize("executable", [False, True])
def test_flat_nar_equals_the_nar_of_the_file(size: int, executable: bool, tmp_path: Path) -> None:
    f = tmp_path / "f"
    data = os.urandom(size)
    write(f, data, 0o755 if executable else 0o644)
    flat = nar.FlatNar(size, executable=executable)
    for i in range(0, size, 4096):
        flat.update(data[i:i + 4096])
    assert flat.finish() == nar.hash_path(f)


def test_flat_nar_refuses_a_short_stream() -> None:
    flat = nar.FlatNar(10)
    flat.update(b"12345")
    with pytest.raises(NarError) as e:
        flat.finish()
    assert e.value.code == "source-changed"


def test_bad_name_is_refused_before_anything_is_copied(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "x"
    write(src, b"x")
    with pytest.raises(StorePathError) as e:
        store.add_path(src, ".hidden")
    assert e.value.code == "invalid-store-path"
    assert list(store.tmp.iterdir()) == []
