"""The C restorer (`_narc.c`) against its reference, `narparser.Parser`: the same tree, leftover and error
message for generated trees and every hostile NAR, whole, in every two-piece split and in tiny pieces."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tdxstore._fs import remove_tree
from tdxstore.errors import NarError
from tdxstore.store import nar, narparser
from tests.unit.store.test_nar import GOOD, HOSTILE, MAGIC, TREES, deep, directory, entry, reg, s
from tests.unit.store.test_narparser import _tree

Outcome = tuple[object, ...]


def _symlink(target: bytes) -> bytes:
    return s(b"(") + s(b"type") + s(b"symlink") + s(b"target") + s(target) + s(b")")


def _exe(data: bytes) -> bytes:
    return s(b"(") + s(b"type") + s(b"regular") + s(b"executable") + s(b"") + s(b"contents") + s(data) + s(b")")


# Beyond test_nar.HOSTILE: each rule of the parser broken once more, at other places in the grammar.
MORE_HOSTILE = {
    "target-too-long": MAGIC + _symlink(b"t" * 4096),
    "target-with-nul": MAGIC + _symlink(b"a\0b"),
    "target-padding": MAGIC + _symlink(b"abc").replace(b"abc\0", b"abc\1"),
    "contents-padding": MAGIC + directory(entry(b"a", reg(b"xyz"))).replace(b"xyz\0", b"xyz\7"),
    "exec-padding": MAGIC + _exe(b"12345").replace(b"12345\0", b"12345\1"),
    "name-padding": MAGIC + directory(entry(b"n", reg(b""))).replace(b"n\0\0", b"n\0\1"),
    "exec-then-mode": MAGIC + s(b"(") + s(b"type") + s(b"regular") + s(b"executable") + s(b"") + s(b"mode"),
    "tag-too-long": MAGIC + s(b"(") + s(b"type") + s(b"r" * 17),
    "name-256-in-subdir": MAGIC + directory(entry(b"d", directory(entry(b"x" * 256, reg(b""))))),
    "unsorted-deep": MAGIC + directory(entry(b"d", directory(entry(b"b", reg(b"")), entry(b"a", reg(b""))))),
    "prefix-after-longer": MAGIC + directory(entry(b"ab", reg(b"")), entry(b"a", reg(b""))),
    "entry-without-node": MAGIC + directory(s(b"entry") + s(b"(") + s(b"name") + s(b"a") + s(b"type")),
    "entry-not-closed": MAGIC + directory(s(b"entry") + s(b"(") + s(b"name") + s(b"a") + s(b"node") + reg(b"")
                                          + s(b"entry")),
    "symlink-bad-tag": MAGIC + s(b"(") + s(b"type") + s(b"symlink") + s(b"path") + s(b"x"),
    "symlink-not-closed": MAGIC + _symlink(b"x")[:-16] + s(b"(") ,
    "truncated-in-size": MAGIC + s(b"(") + s(b"type") + s(b"regular") + s(b"contents") + b"\1\0\0",
    "truncated-in-pad": MAGIC + reg(b"abc")[:-16 - 3],
    "truncated-in-name": (MAGIC + directory(entry(b"abcdefghij", reg(b"x"))))[:8 * 14 + 3],
    "truncated-in-deep": (MAGIC + deep(40))[:-100],
    "deep-symlink": MAGIC + deep(256).replace(reg(b"x"), directory(entry(b"l", _symlink(b"x")))),
    "huge-contents": MAGIC + s(b"(") + s(b"type") + s(b"regular") + s(b"contents") + (1 << 63).to_bytes(8, "little")
    + b"\0" * 40,
}
ALL_HOSTILE = {**HOSTILE, **MORE_HOSTILE}
assert not set(HOSTILE) & set(MORE_HOSTILE)


def _names(root: Path) -> None:
    """Names that sort by raw bytes (not by code point or locale), nested and empty directories."""
    root.mkdir()
    for name in [b"a", b"B", b"_", b"a b", b"a\xff", b"\xc3\xa4", b"\xe2\x82\xac", b"10", b"9", b".x", b"a.b", b"a-b",
                 b"\x01", b"\x7f", b"n" * 255]:
        (root / os.fsdecode(name)).write_bytes(name)
    (root / "empty").mkdir()
    (root / "nest" / "ed" / "deeper").mkdir(parents=True)
    os.symlink("../../a", root / "nest" / "ed" / "up")
    os.symlink("t" * 4095, root / "longest-target")
    (root / "exe").write_bytes(b"")
    os.chmod(root / "exe", 0o755)


GENERATED: dict[str, Callable[[Path], None]] = {
    **{k: v for k, v in TREES.items() if k != "large-file-streamed"},
    "mixed": lambda r: _tree(r, big=False),
    "mixed-big": _tree,
    "names-by-bytes": _names,
}


def _listing(root: Path, canonical: bool) -> list[tuple[object, ...]]:
    """Everything the store keeps of a tree: kind, mode, contents or target, and mtime when it is canonical
    (else it is the time of creation; atime never: walking the tree reads it)."""
    out: list[tuple[object, ...]] = []

    def one(path: Path, rel: str) -> None:
        st = os.lstat(path)
        if not canonical:
            st = os.stat_result((*st[:8], 0, 0))
        if stat.S_ISLNK(st.st_mode):
            out.append((rel, "l", st.st_mtime_ns, os.readlink(path)))
        elif stat.S_ISREG(st.st_mode):
            out.append((rel, "f", stat.S_IMODE(st.st_mode), st.st_mtime_ns, path.read_bytes()))
        else:
            names = sorted(os.listdir(path))
            for name in names:
                one(path / name, f"{rel}/{name}")
            out.append((rel, "d", stat.S_IMODE(st.st_mode), st.st_mtime_ns, tuple(names)))

    one(root, ".")
    return out


def _restore(impl: str, data: bytes, pieces: list[bytes], dest: Path, canonical: bool,
             monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """Restore with `impl` from a chunked source, and what came of it; the tree is removed again."""
    monkeypatch.setenv("TDX_NAR_PYTHON", "1" if impl == "python" else "0")
    assert narparser.implementation() == impl
    todo = list(pieces)
    try:
        left = narparser.restore_from(lambda _n: todo.pop(0) if todo else b"", dest, canonical=canonical)
    except NarError as e:
        assert not os.path.lexists(dest), "a refused NAR must leave nothing behind"
        return ("error", e.code, e.message)
    try:
        return ("ok", left, _listing(dest, canonical), nar.dump_bytes(dest))
    finally:
        remove_tree(dest)


def _splits(data: bytes) -> list[list[bytes]]:
    return [[data[:k], data[k:]] for k in range(1, len(data))]


def _both(data: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, canonical: bool = True,
          every_split: bool = False) -> Outcome:
    """The outcome of the whole `data`, asserted equal for both implementations, whole and in pieces of 1, 3
    and 4096 bytes (4093 and 1 MiB for a large NAR) and, with `every_split`, cut in two at every byte
    boundary. The leftover (bytes of the last piece read after the NAR) depends on the pieces: there the
    two are compared with each other."""
    expected = _restore("python", data, [data], tmp_path / "out", canonical, monkeypatch)
    sizes = (1, 3, 4096) if len(data) <= 1 << 16 else (4093, 1 << 20)  # (a big file byte by byte: too slow)
    cuts = [[data[i:i + n] for i in range(0, len(data), n)] for n in sizes]
    if every_split:
        cuts += _splits(data)
    assert _restore("c", data, [data], tmp_path / "out", canonical, monkeypatch) == expected
    for pieces in cuts:
        got = _restore("c", data, pieces, tmp_path / "out", canonical, monkeypatch)
        assert got == _restore("python", data, pieces, tmp_path / "out", canonical, monkeypatch), \
            [len(p) for p in pieces][:8]
        assert got[:1] + got[2:] == expected[:1] + expected[2:] if got[0] == "ok" else got == expected
    return expected


@pytest.mark.parametrize("case", sorted(ALL_HOSTILE))
def test_every_hostile_nar_gives_the_same_error(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = ALL_HOSTILE[case]
    outcome = _both(data, tmp_path, monkeypatch, every_split=len(data) <= 2048)
    assert outcome[:2] == ("error", "nar-malformed"), outcome
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("canonical", [True, False], ids=["canonical", "plain"])
@pytest.mark.parametrize("case", sorted(GENERATED))
def test_every_generated_tree_comes_out_the_same(case: str, canonical: bool, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    GENERATED[case](tmp_path / "src")
    data = nar.dump_bytes(tmp_path / "src")
    outcome = _both(data + b"NEXT", tmp_path, monkeypatch, canonical, every_split=len(data) <= 2048)
    assert outcome[0] == "ok" and outcome[1] == 4 and outcome[3] == data, outcome[:2]
    remove_tree(tmp_path / "src")


def test_names_and_limits_at_the_edge_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The longest name and target, the deepest nesting and an empty executable: both restore them."""
    for data in (MAGIC + directory(entry(b"n" * 255, _symlink(b"t" * 4095))), MAGIC + deep(256),
                 MAGIC + directory(entry(b"x", _exe(b"")))):
        assert _both(data, tmp_path, monkeypatch, every_split=len(data) <= 8192)[3] == data


def test_an_exact_reader_is_never_read_past_the_nar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TDX_NAR_PYTHON", raising=False)
    _tree(tmp_path / "src", big=True)
    data = nar.dump_bytes(tmp_path / "src")
    stream, asked = memoryview(data + b"TRAILER"), []

    def read(n: int) -> bytes:
        nonlocal stream
        asked.append(n)
        out, stream = bytes(stream[:n]), stream[n:]
        return out

    narparser.restore(read, tmp_path / "out", canonical=True)
    assert bytes(stream) == b"TRAILER" and max(asked) == nar.CHUNK
    assert nar.dump_bytes(tmp_path / "out") == data


def test_a_good_nar_with_a_source_that_ends_early_is_truncated_in_c(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Every proper prefix of a NAR is refused as truncated, with the Python parser's message."""
    for cut in range(len(GOOD)):
        outcome = _restore("c", GOOD[:cut], [GOOD[:cut]] if cut else [], tmp_path / "out", True, monkeypatch)
        want = _restore("python", GOOD[:cut], [GOOD[:cut]] if cut else [], tmp_path / "out", True, monkeypatch)
        assert outcome == want and "truncated" in str(outcome[2]), (cut, outcome)
