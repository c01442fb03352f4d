"""NAR format: byte equality with `nix-store --dump`, a committed golden file, round trips, hostile input."""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tdxstore.errors import NarError, StorePathError
from tdxstore.store import nar, narparser

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "nar" / "fixed-tree.nar"
HAVE_NIX = shutil.which("nix-store") is not None and shutil.which("nix-hash") is not None
no_nix = pytest.mark.skipif(not HAVE_NIX, reason="nix-store/nix-hash (apt nix-bin) not installed: no oracle")


def nix_dump(path: Path) -> bytes:
    return subprocess.run(["nix-store", "--dump", str(path)], check=True, capture_output=True).stdout


def nix_hash(path: Path) -> str:
    out = subprocess.run(["nix-hash", "--type", "sha256", str(path)], check=True, capture_output=True)
    return out.stdout.decode().strip()


def write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


# --- trees: each builder makes the object at `root` (which does not exist yet) ----------------------

def fixed_tree(root: Path) -> None:
    """The tree of the committed golden file; never change it without regenerating the file."""
    write(root / "a", b"hello\n")
    write(root / "exec.sh", b"#!/bin/sh\necho hi\n", 0o755)
    write(root / "empty", b"")
    write(root / "sub dir" / "\u00fc.txt", "gr\u00fc\u00dfe\n".encode())
    write(root / "nested" / "x" / "y" / "z", b"12345678")
    (root / "emptydir").mkdir()
    os.symlink("a", root / "link")
    os.symlink("/tdx/store/does-not-exist", root / "dangling")


def _deep(root: Path) -> None:
    p = root
    for i in range(120):
        p = p / f"d{i}"
    write(p / "leaf", b"deep")


def _sorting(root: Path) -> None:
    # Raw byte order: "B" < "_" < "a" < "a b" < "b" < "\xc3\xa4" (ä) < "\xe2\x82\xac" (€).
    for name in ["a", "B", "_", "a b", "b", "\u00e4", "\u20ac", "10", "9", ".hidden", "a.b", "a-b"]:
        write(root / name, name.encode())


def _dangling(root: Path) -> None:
    root.mkdir()
    os.symlink("nowhere", root / "l")


def _big(root: Path) -> None:
    # Larger than nar.CHUNK and not a multiple of 8: exercises the streamed path and its padding.
    write(root / "big", os.urandom(3 * nar.CHUNK + 5))
    write(root / "small", b"x")


TREES: dict[str, Callable[[Path], None]] = {
    "regular-file": lambda r: write(r, b"some contents\n"),
    "executable-file": lambda r: write(r, b"#!/bin/sh\n", 0o755),
    "user-exec-bit-only-counts": lambda r: write(r, b"x", 0o654),
    "empty-file": lambda r: write(r, b""),
    "symlink-absolute": lambda r: os.symlink("/etc/hostname", r),
    "symlink-relative": lambda r: os.symlink("../x/y", r),
    "symlink-dangling-in-dir": lambda r: _dangling(r),
    "empty-dir": lambda r: r.mkdir(),
    "fixed-tree": fixed_tree,
    "deep-nesting": _deep,
    "names-sorted-by-bytes": _sorting,
    "large-file-streamed": _big,
}


@pytest.mark.needs_nix
@no_nix
@pytest.mark.parametrize("case", sorted(TREES))
def test_dump_equals_nix_store_dump(case: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    TREES[case](root)
    ours = nar.dump_bytes(root)
    assert ours == nix_dump(root)
    digest = nar.hash_path(root)
    assert digest.hex == nix_hash(root)
    assert digest.size == len(ours)
    assert nar.hash_and_scan(root, ["0" * 32])[0] == digest


def test_golden_file_without_nix(tmp_path: Path, nar_impl: str) -> None:
    root = tmp_path / "root"
    fixed_tree(root)
    golden = GOLDEN.read_bytes()
    assert nar.dump_bytes(root) == golden
    out = tmp_path / "restored"
    narparser.restore(io.BytesIO(golden).read, out)
    assert nar.dump_bytes(out) == golden
    assert os.readlink(out / "dangling") == "/tdx/store/does-not-exist"
    assert (out / "exec.sh").stat().st_mode & stat.S_IXUSR
    assert not (out / "a").stat().st_mode & stat.S_IXUSR


def test_dump_streams_in_several_writes(tmp_path: Path, nar_impl: str) -> None:
    root = tmp_path / "root"
    _big(root)
    chunks: list[bytes] = []
    nar.dump(root, chunks.append)
    assert len(chunks) > 3 and all(type(c) is bytes for c in chunks)
    assert b"".join(chunks) == nar.dump_bytes(root)


@pytest.mark.parametrize("kind", ["fifo", "socket", "chardev"])
def test_special_files_refused(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nar_impl: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    special = root / "special"
    if kind == "fifo":
        os.mkfifo(special)
    elif kind == "socket":
        monkeypatch.chdir(root)  # a relative name: socket addresses are limited to 108 bytes
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(special.name)
        sock.close()
    else:
        try:
            os.mknod(special, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod of a character device needs CAP_MKNOD")
    for target in (root, special):
        for archive in (nar.hash_path, nar.dump_bytes):
            with pytest.raises(NarError) as err:
                archive(target)
            assert err.value.code == "nar-unsupported-file"
            assert f"{str(special)!r}: it is a {kind.replace('chardev', 'character device')}" in err.value.message


# --- restore: round trip and hostile input -----------------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_characters="/\0"),
                min_size=1, max_size=12).filter(lambda n: n not in (".", "..") and len(n.encode()) <= 255)
leaves = st.one_of(
    st.tuples(st.just("file"), st.binary(max_size=300), st.booleans()),
    st.tuples(st.just("link"), st.text(st.characters(codec="utf-8", exclude_characters="\0"),
                                       min_size=1, max_size=40)),
)
trees = st.recursive(leaves, lambda kids: st.dictionaries(names, kids, max_size=5), max_leaves=25)


def build(path: Path, tree: object) -> None:
    if isinstance(tree, dict):
        path.mkdir()
        for name, child in tree.items():
            build(path / name, child)
    elif tree[0] == "file":  # type: ignore[index]
        write(path, tree[1], 0o755 if tree[2] else 0o644)  # type: ignore[index]
    else:
        os.symlink(tree[1], path)  # type: ignore[index]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees)
def test_round_trip(tree: object, tmp_path_factory: pytest.TempPathFactory, nar_impl: str) -> None:
    base = tmp_path_factory.mktemp("rt")
    build(base / "src", tree)
    data = nar.dump_bytes(base / "src")
    narparser.restore(io.BytesIO(data).read, base / "dst")
    assert nar.dump_bytes(base / "dst") == data
    assert nar.hash_path(base / "dst") == nar.hash_path(base / "src")
    shutil.rmtree(base)


def s(b: bytes) -> bytes:
    return len(b).to_bytes(8, "little") + b + b"\0" * (-len(b) % 8)


def reg(data: bytes) -> bytes:
    return s(b"(") + s(b"type") + s(b"regular") + s(b"contents") + s(data) + s(b")")


def entry(name: bytes, node: bytes) -> bytes:
    return s(b"entry") + s(b"(") + s(b"name") + s(name) + s(b"node") + node + s(b")")


def directory(*entries: bytes) -> bytes:
    return s(b"(") + s(b"type") + s(b"directory") + b"".join(entries) + s(b")")


def deep(levels: int) -> bytes:
    node = reg(b"x")
    for _ in range(levels):
        node = directory(entry(b"d", node))
    return node


MAGIC = s(b"nix-archive-1")
GOOD = MAGIC + directory(entry(b"a", reg(b"1")), entry(b"b", reg(b"2")))
HOSTILE = {
    "empty-stream": b"",
    "bad-magic": s(b"nix-archive-2") + reg(b"x"),
    "name-dot": MAGIC + directory(entry(b".", reg(b"x"))),
    "name-dotdot": MAGIC + directory(entry(b"..", reg(b"x"))),
    "name-slash": MAGIC + directory(entry(b"a/b", reg(b"x"))),
    "name-traversal": MAGIC + directory(entry(b"../../etc/passwd", reg(b"x"))),
    "name-nul": MAGIC + directory(entry(b"a\0b", reg(b"x"))),
    "name-empty": MAGIC + directory(entry(b"", reg(b"x"))),
    "name-too-long": MAGIC + directory(entry(b"n" * 256, reg(b"x"))),
    "unsorted": MAGIC + directory(entry(b"b", reg(b"1")), entry(b"a", reg(b"2"))),
    "duplicate": MAGIC + directory(entry(b"a", reg(b"1")), entry(b"a", reg(b"2"))),
    "symlink-then-dir-same-name": MAGIC + directory(
        entry(b"l", s(b"(") + s(b"type") + s(b"symlink") + s(b"target") + s(b"/tmp") + s(b")")),
        entry(b"l", directory(entry(b"escaped", reg(b"x"))))),
    "truncated-header": GOOD[:5],
    "truncated-middle": GOOD[: len(GOOD) // 2],
    "truncated-before-close": GOOD[:-8],
    "truncated-contents": MAGIC + s(b"(") + s(b"type") + s(b"regular") + s(b"contents")
    + (100).to_bytes(8, "little") + b"short",
    "nonzero-padding": MAGIC + reg(b"abc").replace(b"abc\0\0\0\0\0", b"abc\0\0\0\0\1"),
    "nonzero-padding-in-tag": MAGIC + s(b"(").replace(b"(\0", b"(\1"),
    "unknown-type": MAGIC + s(b"(") + s(b"type") + s(b"fifo") + s(b")"),
    "unknown-entry-tag": MAGIC + s(b"(") + s(b"type") + s(b"directory") + s(b"file") + s(b")"),
    "unknown-regular-tag": MAGIC + s(b"(") + s(b"type") + s(b"regular") + s(b"mode") + s(b"0") + s(b")"),
    "executable-with-value": MAGIC + s(b"(") + s(b"type") + s(b"regular") + s(b"executable") + s(b"yes")
    + s(b"contents") + s(b"") + s(b")"),
    "missing-open": MAGIC + s(b"type") + s(b"regular"),
    "huge-tag-length": MAGIC + (1 << 60).to_bytes(8, "little"),
    "empty-symlink-target": MAGIC + s(b"(") + s(b"type") + s(b"symlink") + s(b"target") + s(b"") + s(b")"),
    "too-deep": MAGIC + deep(257),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_nar_refused(case: str, tmp_path: Path, nar_impl: str) -> None:
    dest = tmp_path / "out"
    with pytest.raises(NarError) as err:
        narparser.restore(io.BytesIO(HOSTILE[case]).read, dest)
    assert err.value.code == "nar-malformed"
    assert not os.path.lexists(dest), "a refused NAR must leave nothing behind"
    assert sorted(os.listdir(tmp_path)) == []


def test_depth_limit_is_exactly_256(tmp_path: Path, nar_impl: str) -> None:
    narparser.restore(io.BytesIO(MAGIC + deep(256)).read, tmp_path / "ok")
    assert nar.dump_bytes(tmp_path / "ok") == MAGIC + deep(256)


def test_dump_refuses_what_restore_would_refuse(tmp_path: Path, nar_impl: str) -> None:
    """A NAR leaving the store (`dump`, export) nests at most as deep as restore accepts; adding is not limited."""
    narparser.restore(io.BytesIO(MAGIC + deep(256)).read, tmp_path / "t")  # a file at depth 256: fine
    deepest = tmp_path / "t" / "/".join(["d"] * 255)
    (deepest / "d").chmod(0o644)
    (deepest / "d").unlink()
    (deepest / "d").mkdir()
    nar.dump_bytes(tmp_path / "t")  # an empty directory at depth 256: fine too
    (deepest / "d" / "e").symlink_to("x")  # depth 257
    for sink in (nar.dump_bytes, lambda p: nar.dump_chunks(p, lambda _c: None)):
        with pytest.raises(NarError) as err:
            sink(tmp_path / "t")
        assert err.value.code == "nar-too-deep"
        assert err.value.message == (f"cannot archive {str(deepest / 'd')!r}: its entries would be nested deeper "
                                     "than 256 directories")
    assert nar.hash_path(tmp_path / "t").size > 0  # hashing (adding, verifying) goes deeper


def test_restore_refuses_existing_destination(tmp_path: Path, nar_impl: str) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(NarError) as err:
        narparser.restore(io.BytesIO(GOOD).read, tmp_path / "out")
    assert err.value.code == "nar-malformed"


def test_restore_handles_short_reads_and_leaves_trailing_data(tmp_path: Path, nar_impl: str) -> None:
    stream = io.BytesIO(GOOD + b"TRAILER")

    def trickle(n: int) -> bytes:
        return stream.read(min(n, 3))

    narparser.restore(trickle, tmp_path / "out")
    assert nar.dump_bytes(tmp_path / "out") == GOOD
    assert stream.read() == b"TRAILER"


# --- memory: large files are streamed ---------------------------------------------------------------

# VmHWM (this process image's peak RSS, in KiB), not getrusage's ru_maxrss: Linux carries ru_maxrss
# across exec, so a child forked from a large pytest process would report the parent's size.
RSS_SCRIPT = """
import sys
from pathlib import Path
from tdxstore.store import nar
def hwm():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1])
before = hwm()
digest = nar.hash_path(Path(sys.argv[1]))
scan = nar.hash_and_scan(Path(sys.argv[1]), ["0" * 32])[0]
nar.dump(Path(sys.argv[1]), lambda b: None)
after = hwm()
assert scan == digest
print(digest.hex, digest.size, after - before)
"""


def test_large_sparse_file_memory_stays_flat(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(200 * 1024 * 1024 + 3)  # 200 MiB sparse, odd size
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(big)], check=True, capture_output=True,
                         cwd=Path(__file__).resolve().parents[3], text=True).stdout.split()
    hex_digest, size, growth_kib = out[0], int(out[1]), int(out[2])
    assert size == 200 * 1024 * 1024 + 3 + 96 + 5 + 16  # header and tags, padding, ")"
    assert growth_kib < 16 * 1024, f"peak RSS grew by {growth_kib} KiB while hashing 200 MiB"
    if HAVE_NIX:
        assert hex_digest == nix_hash(big)


# --- reference scanning ------------------------------------------------------------------------------

H1 = "0" * 31 + "1"
H2 = "abcdfghijklmnpqrsvwxyz0123456789"[:32].ljust(32, "a")
H3 = "z" * 32


def test_scan_finds_hash_split_across_stream_chunks(tmp_path: Path) -> None:
    high = bytes(0x80 | (i & 0x7F) for i in range(256))  # no byte of the base-32 alphabet
    data = bytearray(os.urandom(2 * nar.CHUNK + 100).translate(high))
    for cut in (nar.CHUNK, 2 * nar.CHUNK):  # file offsets of chunk boundaries when streamed
        data[cut - 13: cut + 19] = H1.encode() if cut == nar.CHUNK else H2.encode()
    write(tmp_path / "f", bytes(data))
    digest, found = nar.hash_and_scan(tmp_path / "f", [H1, H2, H3])
    assert found == {H1, H2}
    assert digest == nar.hash_path(tmp_path / "f")


def test_scan_finds_hash_in_symlink_target_and_name(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    os.symlink(f"/tdx/store/{H1}-bash/bin/sh", tmp_path / "t" / "sh")
    write(tmp_path / "t" / f"{H2}-name", b"no reference in here")
    _, found = nar.hash_and_scan(tmp_path / "t", [H1, H2, H3])
    assert found == {H1, H2}


def test_scan_inside_long_runs_and_partial_matches(tmp_path: Path) -> None:
    write(tmp_path / "a", b"q" * 5000 + H1.encode() + b"q" * 5000)  # long run: per-candidate search
    write(tmp_path / "b", b"xx" + H2.encode() + b"yy")  # short run: sliding windows
    write(tmp_path / "c", H3[:31].encode() + b"-" + H3[:31].encode())  # never 32 in a row
    assert nar.hash_and_scan(tmp_path / "a", [H1, H3])[1] == {H1}
    assert nar.hash_and_scan(tmp_path / "b", [H1, H2])[1] == {H2}
    assert nar.hash_and_scan(tmp_path / "c", [H3])[1] == frozenset()


def test_scanner_every_split_position() -> None:
    from tdxstore.store._refscan import RefScanner

    blob = b"\x00\xff/tdx/store/" + H1.encode() + b"-x\n"
    for cut in range(len(blob) + 1):
        for cut2 in range(cut, len(blob) + 1, 7):
            scanner = RefScanner([H1, H3])
            for part in (blob[:cut], bytearray(blob[cut:cut2]), memoryview(blob[cut2:])):
                scanner.feed(part)
            assert scanner.found == {H1}, (cut, cut2)


@pytest.mark.parametrize("bad", ["short", "/tdx/store/" + H1 + "-x", "e" * 32, "0" * 33])
def test_scan_rejects_bad_candidates(bad: str, tmp_path: Path) -> None:
    write(tmp_path / "f", b"x")
    with pytest.raises(StorePathError) as err:
        nar.hash_and_scan(tmp_path / "f", [bad])
    assert err.value.code == "invalid-store-path"


def test_missing_path_is_a_clear_error(tmp_path: Path, nar_impl: str) -> None:
    for archive in (nar.hash_path, nar.dump_bytes):
        with pytest.raises(NarError) as err:
            archive(tmp_path / "nope")
        assert err.value.code == "nar-unreadable"
        assert err.value.message == f"cannot read {str(tmp_path / 'nope')!r}: No such file or directory"


def test_digest_formats(tmp_path: Path) -> None:
    write(tmp_path / "f", b"")
    digest = nar.hash_path(tmp_path / "f")
    assert len(digest.hex) == 64 and len(digest.base32) == 52
    with pytest.raises(NarError):
        nar.NarDigest(b"short", 1)
