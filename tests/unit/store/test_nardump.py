"""The C dumper (`_nardump.c`) against its reference, `nar._Dumper`: the same bytes for every tree, the same
error for every fault, full chunks, and no file descriptor left open whatever happens."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tdxstore.errors import NarError
from tdxstore.store import _nardump, nar
from tests.unit.store.test_nar import TREES, build, trees, write


def _dump(impl: str, path: Path, sink: Callable[[nar.ByteChunk], None] | None = None) -> bytes:
    """The NAR of `path` through one implementation, collected; `sink` sees each chunk first."""
    parts: list[bytes] = []

    def collect(chunk: nar.ByteChunk) -> None:
        if sink is not None:
            sink(chunk)
        parts.append(bytes(chunk))

    before = os.environ.get("TDX_NAR_PYTHON")
    os.environ["TDX_NAR_PYTHON"] = "1" if impl == "python" else "0"
    try:
        assert nar.implementation() == impl
        size = nar.dump_chunks(path, collect)
    finally:  # as it was: a run with TDX_NAR_PYTHON=1 keeps it for the tests after this one
        if before is None:
            del os.environ["TDX_NAR_PYTHON"]
        else:
            os.environ["TDX_NAR_PYTHON"] = before
    data = b"".join(parts)
    assert size == len(data)
    return data


def _outcome(impl: str, path: Path, sink: Callable[[nar.ByteChunk], None] | None = None) -> object:
    try:
        return _dump(impl, path, sink)
    except (NarError, OSError) as e:
        return type(e).__name__, getattr(e, "code", None), getattr(e, "message", str(e)), getattr(e, "hint", None)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("case", sorted(TREES))
def test_same_bytes_as_the_reference(case: str, tmp_path: Path) -> None:
    TREES[case](tmp_path / "root")
    assert _dump("c", tmp_path / "root") == _dump("python", tmp_path / "root")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees)
def test_same_bytes_for_generated_trees(tree: object, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("gen") / "src"
    build(root, tree)
    assert _dump("c", root) == _dump("python", root)


def test_a_large_directory_sorted_by_bytes_in_full_chunks(tmp_path: Path) -> None:
    """4,000 entries of every byte pattern (sorting), files of every size around the chunk (framing that
    straddles a chunk's end): each chunk but the last is exactly the C dumper's chunk size."""
    root = tmp_path / "root"
    root.mkdir()
    for i in range(4000):
        name = bytes([0x20 + i % 90, 0x80 + i % 120]) + str(i).encode() if i % 3 else str(i).encode()
        with open(os.fsencode(root) + b"/" + name, "wb") as f:
            f.write(os.urandom(i % 700) if i % 7 else b"")
    write(root / "sub" / "exact", os.urandom(nar.CHUNK))
    write(root / "sub" / "under", os.urandom(nar.CHUNK - 1))
    os.symlink("t" * 4095, root / "sub" / "longest-target")
    sizes: list[int] = []
    data = _dump("c", root, lambda c: sizes.append(len(c)))
    assert data == _dump("python", root)
    assert len(sizes) > 3 and set(sizes[:-1]) == {nar.CHUNK} and 0 < sizes[-1] <= nar.CHUNK


def test_a_file_that_shrinks_while_dumped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "a", os.urandom(3 * nar.CHUNK))
    seen = {"bytes": 0}

    def truncate_midway(chunk: nar.ByteChunk) -> None:
        seen["bytes"] += len(chunk)
        if seen["bytes"] > nar.CHUNK:
            os.truncate(root / "a", 100)

    outcomes = []
    for impl in ("c", "python"):
        write(root / "a", os.urandom(3 * nar.CHUNK))
        seen["bytes"] = 0
        outcomes.append(_outcome(impl, root, truncate_midway))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1] == "nar-file-changed"  # type: ignore[index]
    assert f"{str(root / 'a')!r} changed while being archived (expected {3 * nar.CHUNK} bytes)" in outcomes[0][2]  # type: ignore[index]


def test_an_entry_that_vanishes_after_listing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outcomes = []
    for impl in ("c", "python"):
        write(root / "a", os.urandom(2 * nar.CHUNK))
        write(root / "b", b"gone soon")
        outcomes.append(_outcome(impl, root, lambda _c: (root / "b").unlink(missing_ok=True)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1:3] == ("nar-unreadable", f"cannot read {str(root / 'b')!r}: No such file or directory")  # type: ignore[index]


def test_no_descriptor_left_open(tmp_path: Path) -> None:
    """After a whole dump, a failed one and one abandoned midway (the sink raises), every fd is closed."""
    root = tmp_path / "root"
    path = root
    for i in range(20):
        path = path / f"d{i}"
        write(path / "a", os.urandom(nar.CHUNK // 3))  # "a" < "d": read before the walk goes deeper
    os.mkfifo(path / "z-fifo")
    before = _open_fds()
    with pytest.raises(NarError):
        _dump("c", root)
    assert _open_fds() == before

    def stop(_chunk: nar.ByteChunk) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _dump("c", root, stop)
    assert _open_fds() == before
    (path / "z-fifo").unlink()
    _dump("c", root)
    assert _open_fds() == before


def test_the_dumper_object_refuses_misuse(tmp_path: Path) -> None:
    write(tmp_path / "f", b"x")
    d = _nardump.Dumper(os.fsencode(tmp_path / "f"), 256)
    with pytest.raises(RuntimeError, match="initialised once"):
        d.__init__(os.fsencode(tmp_path / "f"), 256)  # type: ignore[misc]
    with pytest.raises(BufferError):
        d.fill(b"read-only")  # type: ignore[arg-type]
    buf = bytearray(1 << 16)
    n = d.fill(buf)
    assert bytes(buf[:n]) == nar.dump_bytes(tmp_path / "f") and d.fill(buf) == 0
    for bad in (b"", b"a\0b"):
        with pytest.raises(ValueError, match="non-empty without NUL"):
            _nardump.Dumper(bad, 256)
    missing = _nardump.Dumper(os.fsencode(tmp_path / "nope"), 256)
    with pytest.raises(_nardump.Fault) as fault:
        missing.fill(buf)
    assert fault.value.args == ("os", os.fsencode(tmp_path / "nope"), 2)
    with pytest.raises(RuntimeError, match="already failed"):
        missing.fill(buf)
    unused = _nardump.Dumper(os.fsencode(tmp_path / "f"), 256)
    unused.close()
    with pytest.raises(RuntimeError, match="already failed"):
        unused.fill(buf)
