"""The NAR parser's fast path and chunked sources: the same tree (and errors) whatever the chunking,
and a canonical restore equal to a restore followed by `normalise_tree`."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tdxstore.errors import NarError
from tdxstore.store import nar, narparser
from tdxstore.store.narparser import restore_from
from tdxstore.store.normalise import normalise_tree
from tests.unit.store.test_nar import HOSTILE, MAGIC, directory, entry, reg, s


def _tree(root: Path, big: bool = True) -> None:
    """Plain and executable files (one empty, one over CHUNK), a symlink, nested and empty directories."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "empty").write_bytes(b"")
    (root / "big.bin").write_bytes(os.urandom(nar.CHUNK + 12345 if big else 12345))
    (root / "sub" / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(root / "sub" / "run.sh", 0o755)
    (root / "sub" / "deeper" / ("n" * 255)).write_bytes(b"long name")
    os.symlink("../a.txt", root / "sub" / "link")
    for i in range(40):
        (root / "sub" / f"f{i:02}").write_bytes(bytes([i]) * (i * 37))


def _chunks(data: bytes, size: int) -> Callable[[int], bytes]:
    """A chunked source: whole pieces of `size` bytes, whatever the parser asks for."""
    pieces = [data[i:i + size] for i in range(0, len(data), size)]
    return lambda _n: pieces.pop(0) if pieces else b""


def _metadata(root: Path) -> list[tuple[str, int, int]]:
    """Mode and mtime of everything (not atime: listing a directory to walk it sets its atime)."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files, "."]:
            st = os.lstat(os.path.join(dirpath, name))
            out.append((os.path.relpath(os.path.join(dirpath, name), root), st.st_mode, st.st_mtime_ns))
    return sorted(out)


@pytest.mark.parametrize("size", [1, 7, 8, 13, 64, 4096, 1 << 20, 1 << 24])
def test_any_chunking_restores_the_same_tree(tmp_path: Path, size: int, nar_impl: str) -> None:
    _tree(tmp_path / "src", big=size >= 4096)  # (a file over CHUNK in 1-byte pieces: a million writes)
    data = nar.dump_bytes(tmp_path / "src")
    assert restore_from(_chunks(data, size), tmp_path / "out") == 0
    assert nar.dump_bytes(tmp_path / "out") == data


def test_a_chunked_source_may_run_past_the_nar(tmp_path: Path, nar_impl: str) -> None:
    data = MAGIC + directory(entry(b"a", reg(b"1")))
    assert restore_from(_chunks(data + b"NEXT", 1 << 20), tmp_path / "out") == 4
    assert nar.dump_bytes(tmp_path / "out") == data


def test_canonical_restore_is_what_normalise_tree_makes(tmp_path: Path, nar_impl: str) -> None:
    _tree(tmp_path / "src")
    data = nar.dump_bytes(tmp_path / "src")
    narparser.restore(io.BytesIO(data).read, tmp_path / "plain")
    normalise_tree(tmp_path / "plain")
    restore_from(_chunks(data, 5000), tmp_path / "canonical", canonical=True)
    assert _metadata(tmp_path / "canonical") == _metadata(tmp_path / "plain")
    assert stat.S_IMODE(os.lstat(tmp_path / "canonical" / "sub" / "run.sh").st_mode) == 0o555
    assert stat.S_IMODE(os.lstat(tmp_path / "canonical" / "sub").st_mode) == 0o555
    assert nar.dump_bytes(tmp_path / "canonical") == data


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("size", [3, 1 << 20])
def test_hostile_nar_refused_in_chunks_too(case: str, size: int, tmp_path: Path, nar_impl: str) -> None:
    with pytest.raises(NarError) as err:
        restore_from(_chunks(HOSTILE[case], size), tmp_path / "out", canonical=True)
    assert err.value.code == "nar-malformed"
    assert os.listdir(tmp_path) == []


def test_fast_path_refusals_name_the_entry(tmp_path: Path, nar_impl: str) -> None:
    """Entries the fast path declines are refused by the token-by-token path with its message."""
    cases = {
        b"..": "invalid entry name b'..'",
        b"a/b": "invalid entry name b'a/b'",
    }
    for name, message in cases.items():
        with pytest.raises(NarError, match=message.replace(".", r"\.")):
            restore_from(_chunks(MAGIC + directory(entry(name, reg(b"x"))), 1 << 20), tmp_path / "out")
    bad_pad = MAGIC + directory(entry(b"abc", reg(b"x"))).replace(b"abc\0\0\0\0\0", b"abc\0\0\0\0\1")
    with pytest.raises(NarError, match="non-zero padding"):
        restore_from(_chunks(bad_pad, 1 << 20), tmp_path / "out")
    unsorted = MAGIC + directory(entry(b"b", reg(b"1")), entry(b"a", reg(b"2")))
    with pytest.raises(NarError, match="not sorted"):
        restore_from(_chunks(unsorted, 1 << 20), tmp_path / "out")
    exec_value = MAGIC + directory(entry(b"x", s(b"(") + s(b"type") + s(b"regular") + s(b"executable")
                                         + s(b"yes") + s(b"contents") + s(b"") + s(b")")))
    with pytest.raises(NarError, match="'executable' must be followed"):
        restore_from(_chunks(exec_value, 1 << 20), tmp_path / "out")
    assert os.listdir(tmp_path) == []
