"""The Nix archive (NAR) format, byte for byte equal to `nix-store --dump` (L2).

Serialises a file/directory/symlink tree and hashes it (every store add does this, so it is fast);
`narparser.py` restores it from an untrusted stream, failing closed. Neither follows symlinks,
writes outside the destination, or reads a whole large file into memory. Grammar (Nix
`archive.hh`); int(n) is 8 bytes little-endian, str(s) = int(|s|) s, zero-padded to 8 bytes:

    nar       = str("nix-archive-1") node
    node      = str("(") str("type") body str(")")
    body      = str("regular") [str("executable") str("")] str("contents") str(<data>)
              | str("symlink") str("target") str(<target>)
              | str("directory") { entry }
    entry     = str("entry") str("(") str("name") str(<name>) str("node") node str(")")

Entries are sorted by the raw bytes of their names, without duplicates; a name is never empty,
".", "..", and never holds "/" or NUL. Only the owner's execute bit is recorded (Nix S_IXUSR).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tdxstore._fs import remove_tree
from tdxstore.errors import NarError
from tdxstore.store import base32
from tdxstore.store._refscan import ByteChunk, HashBeside, RefScanner, ScanBeside
from tdxstore.store.normalise import CANONICAL_TIME

try:
    from tdxstore.store import _nardump
except ImportError:  # not built (a checkout without a compiler): `_Dumper` does every dump
    _nardump = None  # type: ignore[assignment]

MAGIC = b"nix-archive-1"
MAX_DEPTH = 256  # deepest node (the root is 0) of a NAR that is restored, or dumped to leave the store
CHUNK = 1 << 20  # files larger than this are streamed in chunks of this size
_FLUSH = 1 << 18  # small writes are batched into one sink call per 256 KiB
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TIMES_NS = (CANONICAL_TIME * 1_000_000_000,) * 2  # (atime, mtime) of every store file


def _read_umask() -> int | None:
    """The process umask from /proc (os.umask can only read it by changing it, racing other threads)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


# A copied file is created with its canonical mode when the umask cannot strip bits of it (an fd
# opened for writing by O_CREAT stays writable whatever the new file's mode): one fchmod less per
# file. Read once: tdx never changes its umask.
_UMASK = _read_umask()
_CREATE_CANONICAL = _UMASK is not None and not _UMASK & 0o555


def _str(s: bytes) -> bytes:
    n = len(s)
    return n.to_bytes(8, "little") + s + b"\0" * (-n % 8)


_PAD = tuple(b"\0" * i for i in range(8))
_OPEN = _str(b"(")
_CLOSE = _str(b")")
_HEADER = _str(MAGIC)
_T_REGULAR = _str(b"type") + _str(b"regular")
_T_SYMLINK = _str(b"type") + _str(b"symlink") + _str(b"target")
_T_DIRECTORY = _str(b"type") + _str(b"directory")
_EXECUTABLE = _str(b"executable") + _str(b"")
_CONTENTS = _str(b"contents")
_ENTRY_NAME = _str(b"entry") + _OPEN + _str(b"name")
_NODE = _str(b"node") + _OPEN
_END_ENTRY = _CLOSE + _CLOSE


@dataclass(frozen=True, slots=True)
class NarDigest:
    """SHA-256 of a NAR and its length in bytes (what the store database records)."""

    sha256: bytes
    size: int

    def __post_init__(self) -> None:
        if len(self.sha256) != 32 or self.size < 0:
            raise NarError(f"invalid NAR digest: {len(self.sha256)}-byte hash, size {self.size}",
                           code="nar-digest-invalid")

    @property
    def hex(self) -> str:
        return self.sha256.hex()

    @property
    def base32(self) -> str:
        """Nix base-32, as in `sha256:<base32>` narHash fields."""
        return base32.encode(self.sha256)


class _Dumper:
    """Walks a tree and emits NAR bytes to `sink`, batching small writes into one buffer.

    With `mirror` (source prefix length, destination root) it also recreates the tree at the
    destination from the same reads, already canonical (see `copy_and_hash`).
    """

    __slots__ = ("_buf", "_contents", "_copy", "_depth", "_max_depth", "_mirror", "_sink", "size")

    def __init__(self, sink: Callable[[ByteChunk], None], copy: bool,
                 mirror: tuple[int, bytes] | None = None,
                 contents: Callable[[ByteChunk], None] | None = None, max_depth: int | None = None) -> None:
        self._sink = sink
        self._contents = contents
        self._copy = copy  # True: every sink call gets a fresh object it may keep
        self._mirror = mirror
        self._max_depth = max_depth  # None: as deep as Python's recursion goes (adding a tree)
        self._depth = 0  # of the directory being listed: the root is 0
        self._buf = bytearray(_HEADER)
        self.size = 0

    def flush(self) -> None:
        if self._buf:
            self.size += len(self._buf)
            self._sink(bytes(self._buf) if self._copy else self._buf)
            self._buf = bytearray()

    def _dest(self, path: bytes) -> bytes:
        assert self._mirror is not None
        return self._mirror[1] + path[self._mirror[0]:]

    def root(self, path: bytes) -> None:
        try:
            st = os.lstat(path)
        except OSError as e:
            raise _os_error(path, e) from e
        self._buf += _OPEN
        if stat.S_ISDIR(st.st_mode):
            self._directory(path)
        elif stat.S_ISLNK(st.st_mode):
            self._symlink(path)
        elif stat.S_ISREG(st.st_mode):
            self._regular(path)
        else:
            raise _unsupported(path, st.st_mode)
        self._buf += _CLOSE
        self.flush()

    def _directory(self, path: bytes) -> None:
        try:
            before = os.lstat(path) if self._mirror else None
            with os.scandir(path) as it:
                entries = sorted((e.name, e) for e in it)
            if self._mirror:
                os.mkdir(self._dest(path), 0o700)
        except OSError as e:
            raise _os_error(path, e) from e
        if entries and self._max_depth is not None and self._depth >= self._max_depth:
            raise _too_deep(path)
        self._depth += 1
        buf = self._buf
        buf += _T_DIRECTORY
        for name, entry in entries:
            n = len(name)
            buf += _ENTRY_NAME
            buf += n.to_bytes(8, "little")
            buf += name
            buf += _PAD[-n % 8]
            buf += _NODE
            if entry.is_file(follow_symlinks=False):
                self._regular(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                self._directory(entry.path)
            elif entry.is_symlink():
                self._symlink(entry.path)
            else:
                raise _unsupported(entry.path, entry.stat(follow_symlinks=False).st_mode)
            buf = self._buf  # a nested call may have flushed and replaced the buffer
            buf += _END_ENTRY
            if len(buf) >= _FLUSH:
                self.flush()
                buf = self._buf
        self._depth -= 1
        if before is not None:
            try:
                _unchanged(path, before, os.lstat(path))
                dest = self._dest(path)
                os.chmod(dest, 0o555)  # after the children: creating them needed write access
                os.utime(dest, ns=_TIMES_NS, follow_symlinks=False)
            except OSError as e:
                raise _os_error(path, e) from e

    def _symlink(self, path: bytes) -> None:
        try:
            target = os.readlink(path)
            if self._mirror:
                dest = self._dest(path)
                os.symlink(target, dest)
                os.utime(dest, ns=_TIMES_NS, follow_symlinks=False)
        except OSError as e:
            raise _os_error(path, e) from e
        self._buf += _T_SYMLINK
        self._buf += _str(target)

    def _regular(self, path: bytes) -> None:
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as e:
            raise _os_error(path, e) from e
        out = -1
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # replaced between listing and opening
                raise _unsupported(path, st.st_mode)
            size = st.st_size
            executable = bool(st.st_mode & stat.S_IXUSR)
            if self._mirror:
                mode = 0o555 if executable else 0o444
                out = os.open(self._dest(path), _WRITE_FLAGS, mode if _CREATE_CANONICAL else 0o700)
            buf = self._buf
            buf += _T_REGULAR
            if executable:
                buf += _EXECUTABLE
            buf += _CONTENTS
            buf += size.to_bytes(8, "little")
            if size <= CHUNK:
                data = os.read(fd, size)
                if len(data) != size:
                    raise _changed(path, size)
                buf += data
                if out >= 0:
                    _write_all(out, data)
                if self._contents is not None:
                    self._contents(data)
            else:
                self.flush()
                self._stream(fd, path, size, out)
            self._buf += _PAD[-size % 8]
            if out >= 0:
                _unchanged(path, st, os.fstat(fd))
                # Canonical as normalise_tree leaves it: 0444/0555 (Nix keeps only the owner's x bit
                # in the NAR, so that is the bit that decides), mtime 1.
                if not _CREATE_CANONICAL:
                    os.fchmod(out, mode)
                os.utime(out, ns=_TIMES_NS)
        except OSError as e:
            raise _os_error(path, e) from e
        finally:
            os.close(fd)
            if out >= 0:
                os.close(out)

    def _stream(self, fd: int, path: bytes, size: int, out: int) -> None:
        """Feed a large file to the sink chunk by chunk; memory stays at one chunk."""
        sink = self._sink
        left = size
        if self._copy:
            while left:
                data = os.read(fd, min(left, CHUNK))
                if not data:
                    raise _changed(path, size)
                sink(data)
                if out >= 0:
                    _write_all(out, data)
                if self._contents is not None:
                    self._contents(data)
                left -= len(data)
        else:
            # Two buffers in turn: the sink may still hash or scan one while the next is read into
            # the other (it returns only once it is done with the chunk before the current one).
            bufs = (bytearray(CHUNK), bytearray(CHUNK))
            views = (memoryview(bufs[0]), memoryview(bufs[1]))
            turn = 0
            while left:
                chunk, view = bufs[turn], views[turn]
                turn ^= 1
                got = os.readv(fd, [view[: min(left, CHUNK)]])
                if not got:
                    raise _changed(path, size)
                sink(chunk if got == CHUNK else view[:got])  # a whole bytearray: the scanner needs no copy
                if out >= 0:
                    _write_all(out, view[:got])
                if self._contents is not None:
                    self._contents(view[:got])
                left -= got
        self.size += size


def _write_all(fd: int, data: ByteChunk) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unchanged(path: bytes, before: os.stat_result, after: os.stat_result) -> None:
    """The cheap second look (size, mtime, ctime) that catches a source written to during its copy."""
    if (before.st_size, before.st_mtime_ns, before.st_ctime_ns) != (
            after.st_size, after.st_mtime_ns, after.st_ctime_ns):
        raise NarError(f"{os.fsdecode(path)!r} changed while it was being added to the store",
                       hint="Make sure nothing writes to the tree while it is added, then add it again.",
                       code="source-changed")


def _unsupported(path: bytes, mode: int) -> NarError:
    kind = {stat.S_IFCHR: "character device", stat.S_IFBLK: "block device", stat.S_IFIFO: "fifo",
            stat.S_IFSOCK: "socket"}.get(stat.S_IFMT(mode), f"file of type {stat.S_IFMT(mode):o}")
    return NarError(f"cannot archive {os.fsdecode(path)!r}: it is a {kind}",
                    hint="Store paths may hold only regular files, directories and symlinks; remove it.",
                    code="nar-unsupported-file")


def _changed(path: bytes, size: int) -> NarError:
    return NarError(f"{os.fsdecode(path)!r} changed while being archived (expected {size} bytes)",
                    hint="Make sure nothing writes to the tree while it is added to the store.",
                    code="nar-file-changed")


def _too_deep(path: bytes) -> NarError:
    return NarError(f"cannot archive {os.fsdecode(path)!r}: its entries would be nested deeper than {MAX_DEPTH} "
                    "directories", hint="A NAR nested that deep cannot be imported (restore refuses it); flatten "
                    "the tree.", code="nar-too-deep")


def _os_error(path: bytes, e: OSError) -> OSError | NarError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):  # the copy's side is full: the caller names the space needed
        return OSError(e.errno, e.strerror, e.filename)
    return NarError(f"cannot read {os.fsdecode(path)!r}: {e.strerror or e}",
                    hint="Check that the tree is readable by this user.", code="nar-unreadable")


def _run(path: Path, sink: Callable[[ByteChunk], None], copy: bool,
         contents: Callable[[ByteChunk], None] | None = None) -> int:
    dumper = _Dumper(sink, copy, contents=contents)
    try:
        dumper.root(os.fsencode(path))
    except RecursionError as e:
        raise NarError(f"{str(path)!r} is nested too deeply to archive", code="nar-too-deep") from e
    return dumper.size


def implementation() -> str:
    """"c" when dumps go through `_nardump`, "python" when it is not built or TDX_NAR_PYTHON=1 (tests, debugging)."""
    return "python" if _nardump is None or os.environ.get("TDX_NAR_PYTHON") == "1" else "c"


def _export(path: Path, sink: Callable[[ByteChunk], None], copy: bool) -> int:
    """A NAR that leaves the store (`dump`, `dump_chunks`): nested at most MAX_DEPTH, so it can be restored."""
    if implementation() == "python":
        dumper = _Dumper(sink, copy, max_depth=MAX_DEPTH)
        dumper.root(os.fsencode(path))
        return dumper.size
    return _dump_c(path, sink, copy)


def _dump_c(path: Path, sink: Callable[[ByteChunk], None], copy: bool) -> int:
    """`_export` through the C dumper: it fills two buffers of CHUNK in turn, the GIL released while it reads
    (1 MiB buffers: export took 0.90-0.99x the time it took with 256 KiB)."""
    dumper = _nardump.Dumper(os.fsencode(path), MAX_DEPTH)
    bufs = (bytearray(CHUNK), bytearray(CHUNK))
    views = (memoryview(bufs[0]), memoryview(bufs[1]))
    size = turn = 0
    try:
        while n := dumper.fill(bufs[turn]):
            chunk = bufs[turn] if n == CHUNK else views[turn][:n]  # a whole bytearray: scanners need no copy
            sink(bytes(chunk) if copy else chunk)
            size += n
            turn ^= 1
            if n < CHUNK:  # the NAR has ended
                break
    except _nardump.Fault as e:
        raise _c_fault(*e.args) from None
    finally:
        dumper.close()
    return size


def _c_fault(kind: str, path: bytes, value: int) -> OSError | NarError:
    """The C dumper's fault in the words of the Python one."""
    if kind == "os":
        return _os_error(path, OSError(value, os.strerror(value), os.fsdecode(path)))
    if kind == "unsupported":
        return _unsupported(path, value)
    if kind == "changed":
        return _changed(path, value)
    return _too_deep(path)


def dump(path: Path, write: Callable[[bytes], None]) -> None:
    """Stream the NAR of `path` (file, directory or symlink; not followed) to `write`."""
    _export(path, write, copy=True)  # type: ignore[arg-type]  # copy=True: write only ever gets bytes


def dump_chunks(path: Path, sink: Callable[[ByteChunk], None]) -> int:
    """Stream the NAR of `path` to `sink` without copying it; return its size.

    A chunk may be one of two buffers the dumper refills in turn: when a call returns, `sink` must be
    done with the chunk of the call before (a `HashBeside` is; so is anything that consumes a chunk
    before returning, as zstd's stream writer copies its input).
    """
    return _export(path, sink, copy=False)


def dump_bytes(path: Path) -> bytes:
    """The whole NAR in memory: for tests and small trees only."""
    parts: list[bytes] = []
    dump(path, parts.append)
    return b"".join(parts)


def hash_path(path: Path, contents: Callable[[ByteChunk], None] | None = None) -> NarDigest:
    """SHA-256 and size of the NAR of `path`, without materialising it.

    `contents` is fed every file's bytes in the same pass (for a single file: its flat hash).
    """
    h = hashlib.sha256()
    size = _run(path, h.update, copy=False, contents=contents)
    return NarDigest(h.digest(), size)


def hash_and_scan(path: Path, candidates: Iterable[str]) -> tuple[NarDigest, frozenset[str]]:
    """`hash_path` plus the subset of `candidates` (32-char hash parts) occurring in the NAR bytes."""
    h = hashlib.sha256()
    scanner = RefScanner(candidates)
    if scanner.done:
        return hash_path(path), frozenset()
    sink = ScanBeside(h, scanner)
    try:
        size = _run(path, sink, copy=False)
        sink.finish()
    finally:
        sink.close()
    return NarDigest(h.digest(), size), frozenset(scanner.found)


def copy_and_hash(src: Path, dest: Path, contents: Callable[[ByteChunk], None] | None = None) -> NarDigest:
    """Copy `src` to `dest` (which must not exist) and return the NAR digest, reading each byte once.

    The copy is canonical as `normalise_tree` leaves a tree (0444/0555, directories 0555, mtime 1),
    and `dest` hashes to the returned digest because both come from the same reads: this is Nix's
    NAR dump streamed into a restore. A source written to during the copy is caught by comparing
    each file's and directory's size, mtime and ctime before and after (code "source-changed").
    `contents` is fed every file's bytes as they pass (for a single file: its flat hash); it must
    not keep them. On error the partial copy is removed.
    """
    h = hashlib.sha256()
    source = os.fsencode(path := Path(src))
    sink = HashBeside(h)  # hashes in a worker while this thread writes the chunk and reads the next
    dumper = _Dumper(sink, copy=False, mirror=(len(source), os.fsencode(dest)), contents=contents)
    try:
        dumper.root(source)
        sink.finish()
    except RecursionError as e:
        remove_tree(dest)
        raise NarError(f"{str(path)!r} is nested too deeply to archive", code="nar-too-deep") from e
    except BaseException:
        remove_tree(dest)
        raise
    finally:
        sink.close()  # no worker outlives the call, whatever happened
    return NarDigest(h.digest(), dumper.size)


class FlatNar:
    """The NAR digest of one regular file, from the same pass that hashes or copies its bytes.

    A single file's NAR is fixed framing, its size, the bytes, padding and ")": once the size is
    known, the NAR hash needs no second read (fetches, `add_flat`). `finish` checks the byte count.
    """

    __slots__ = ("_head", "_left", "_nar", "_size")

    def __init__(self, size: int, executable: bool = False) -> None:
        if size < 0:
            raise NarError(f"invalid file size {size}", code="nar-digest-invalid")
        head = _HEADER + _OPEN + _T_REGULAR + (_EXECUTABLE if executable else b"") + _CONTENTS
        self._nar = hashlib.sha256(head + size.to_bytes(8, "little"))
        self._head = len(head) + 8
        self._size = size
        self._left = size

    def update(self, chunk: ByteChunk) -> None:
        self._left -= len(chunk)
        self._nar.update(chunk)

    def finish(self) -> NarDigest:
        if self._left != 0:
            raise NarError(f"file of {self._size} bytes announced, {self._size - self._left} hashed",
                           hint="The file changed while it was read; fetch or add it again.",
                           code="source-changed")
        self._nar.update(_PAD[-self._size % 8] + _CLOSE)
        return NarDigest(self._nar.digest(), self._head + self._size + (-self._size % 8) + len(_CLOSE))
