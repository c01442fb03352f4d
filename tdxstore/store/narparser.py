"""The strict NAR parser: rebuilds a tree from an untrusted stream, failing closed (L3).

The grammar and the format's constants are in `nar.py`; `restore` is the public entry point. The parser never
writes outside the destination, never follows a symlink and holds one source chunk in memory; given
a `read(n)` it never asks for a byte past the NAR. `Parser` is the reference: restores go through the
C restorer `_narc.c` (the same rules and messages, the GIL released per chunk) when it is built and
TDX_NAR_PYTHON is not 1. In `Parser`, a regular file in a directory is matched in one step against
fixed token strings; anything else, or anything unexpected, goes token by token, which names the error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tdxstore._fs import remove_tree
from tdxstore.errors import NarError
from tdxstore.store.nar import (
    _CREATE_CANONICAL,
    _PAD,
    _TIMES_NS,
    _WRITE_FLAGS,
    CHUNK,
    MAGIC,
    MAX_DEPTH,
    _str,
    _write_all,
)
from tdxstore.store.normalise import CANONICAL_TIME

try:
    from tdxstore.store import _narc
except ImportError:  # not built (a checkout without a compiler): `Parser` does every restore
    _narc = None  # type: ignore[assignment]

_MAX_TAG = 16  # longest tag is "executable"/"directory"
_MAX_NAME = 255  # NAME_MAX
_MAX_TARGET = 4095  # PATH_MAX - 1
_SMALL = 1 << 16  # contents up to this size are sliced (copied); larger ones go out through a memoryview


_ENTRY = _str(b"entry")
_ENTRY_HEAD = _ENTRY + _str(b"(") + _str(b"name")  # then the name's length
_REG = _str(b"node") + _str(b"(") + _str(b"type") + _str(b"regular")
_REG_PLAIN = _REG + _str(b"contents")  # then the size
_REG_EXEC = _REG + _str(b"executable") + _str(b"") + _str(b"contents")
_TAIL = _str(b")") + _str(b")")  # the node's and the entry's


def _malformed(what: str) -> NarError:
    return NarError(f"malformed NAR: {what}", hint="The archive is corrupt or hostile; fetch it again.",
                    code="nar-malformed")


class Parser:
    """Reads NAR tokens from `more(n)` and rebuilds the tree; `canonical` creates it as the store keeps it.

    `more(n)` returns at least one byte (b"" at the end): either at most `n` (an exact reader, which
    the parser never asks past the NAR) or a whole chunk of a stream that ends with the NAR.
    Canonical: files 0444/0555, directories 0555, every mtime and atime 1, as `normalise_tree`
    leaves a tree, so no second walk is needed; otherwise 0644/0755 and the times of creation.
    """

    __slots__ = ("_buf", "_canonical", "_more", "_pos")

    def __init__(self, more: Callable[[int], bytes], canonical: bool = False) -> None:
        self._more = more
        self._canonical = canonical
        self._buf = b""
        self._pos = 0

    @property
    def leftover(self) -> int:
        """Bytes taken from the source but not parsed (only a chunked source can leave any)."""
        return len(self._buf) - self._pos

    def _fill(self, n: int) -> bool:
        """At least `n` bytes in the buffer from the position on; False if the source ends first."""
        while len(self._buf) - self._pos < n:
            data = self._more(n - (len(self._buf) - self._pos))
            if not data:
                return False
            rest = self._buf[self._pos:]
            self._buf, self._pos = (rest + data if rest else data), 0
        return True

    def exact(self, n: int) -> bytes:
        if len(self._buf) - self._pos < n and not self._fill(n):
            raise _malformed(f"truncated stream (wanted {n} bytes, got {len(self._buf) - self._pos})")
        pos = self._pos
        self._pos = pos + n
        return self._buf[pos:pos + n]

    def number(self) -> int:
        return int.from_bytes(self.exact(8), "little")

    def padding(self, n: int) -> None:
        if -n % 8 and self.exact(-n % 8).strip(b"\0"):
            raise _malformed("non-zero padding")

    def string(self, limit: int, what: str) -> bytes:
        n = self.number()
        if n > limit:
            raise _malformed(f"{what} of {n} bytes exceeds the limit of {limit}")
        data = self.exact(n)
        self.padding(n)
        return data

    def expect(self, tag: bytes) -> None:
        got = self.string(_MAX_TAG, "tag")
        if got != tag:
            raise _malformed(f"expected {tag.decode()!r}, found {got!r}")

    def nar(self, dest: bytes) -> None:
        if self.string(_MAX_TAG, "magic") != MAGIC:
            raise _malformed("bad magic (not a Nix archive)")
        self.node(dest, 0)

    def node(self, dest: bytes, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _malformed(f"directory nesting deeper than {MAX_DEPTH}")
        self.expect(b"(")
        self.expect(b"type")
        kind = self.string(_MAX_TAG, "tag")
        if kind == b"regular":
            self.regular(dest)
        elif kind == b"symlink":
            self.expect(b"target")
            target = self.string(_MAX_TARGET, "symlink target")
            if not target or b"\0" in target:
                raise _malformed(f"invalid symlink target {target!r}")
            os.symlink(target, dest)
            if self._canonical:
                os.utime(dest, ns=_TIMES_NS, follow_symlinks=False)
            self.expect(b")")
        elif kind == b"directory":
            self.directory(dest, depth)
        else:
            raise _malformed(f"unknown node type {kind!r}")

    def regular(self, dest: bytes) -> None:
        tag = self.string(_MAX_TAG, "tag")
        executable = tag == b"executable"
        if executable:
            if self.string(_MAX_TAG, "tag"):
                raise _malformed("'executable' must be followed by an empty string")
            tag = self.string(_MAX_TAG, "tag")
        if tag != b"contents":
            raise _malformed(f"expected 'contents', found {tag!r}")
        size = self.number()
        self._file(dest, size, executable)
        self.padding(size)
        self.expect(b")")

    def _file(self, dest: bytes, size: int, executable: bool) -> None:
        """Create `dest` with the next `size` bytes: straight from the buffer, chunk by chunk."""
        if self._canonical:
            mode = 0o555 if executable else 0o444
            fd = os.open(dest, _WRITE_FLAGS, mode if _CREATE_CANONICAL else 0o700)
        else:
            fd = os.open(dest, _WRITE_FLAGS, 0o755 if executable else 0o644)
        try:
            left = size
            while left:
                buf, pos = self._buf, self._pos
                avail = len(buf) - pos
                if not avail:
                    data = self._more(min(left, CHUNK))
                    if not data:
                        raise _malformed(f"truncated file contents ({size - left} of {size} bytes)")
                    self._buf, self._pos = data, 0
                    continue
                n = min(avail, left)
                if n == len(buf):
                    _write_all(fd, buf)
                elif n <= _SMALL:
                    _write_all(fd, buf[pos:pos + n])
                else:
                    _write_all(fd, memoryview(buf)[pos:pos + n])
                self._pos = pos + n
                left -= n
            if self._canonical:
                if not _CREATE_CANONICAL:
                    os.fchmod(fd, mode)
                os.utime(fd, ns=_TIMES_NS)
        finally:
            os.close(fd)

    def directory(self, dest: bytes, depth: int) -> None:
        os.mkdir(dest, 0o700 if self._canonical else 0o755)
        previous: bytes | None = None
        while True:
            name = self._regular_entry(dest, previous) if depth < MAX_DEPTH else None
            if name is None:  # not a plain regular file, or not as expected: token by token
                tag = self.string(_MAX_TAG, "tag")
                if tag == b")":
                    break
                if tag != b"entry":
                    raise _malformed(f"expected 'entry' or ')', found {tag!r}")
                self.expect(b"(")
                self.expect(b"name")
                name = self.string(_MAX_NAME, "name")
                if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
                    raise _malformed(f"invalid entry name {name!r}")
                if previous is not None and name <= previous:
                    raise _malformed(f"entry {name!r} is not sorted after {previous!r} (or is a duplicate)")
                self.expect(b"node")
                self.node(dest + b"/" + name, depth + 1)
                self.expect(b")")
            previous = name
        if self._canonical:  # last: creating the children needed write access and changed the mtime
            os.chmod(dest, 0o555)
            os.utime(dest, ns=_TIMES_NS, follow_symlinks=False)

    def _regular_entry(self, dest: bytes, previous: bytes | None) -> bytes | None:
        """The fast path: one whole regular-file entry whose tokens all read as expected, or None
        (nothing consumed). It asks the source only for bytes that any valid entry has, so an exact
        reader is never read past the NAR: 16 (an entry or the directory's end), then 56 + name + 88."""
        if len(self._buf) - self._pos < 56 and (
                not self._fill(16) or not self._buf.startswith(_ENTRY, self._pos) or not self._fill(56)):
            return None
        buf, pos = self._buf, self._pos
        if not buf.startswith(_ENTRY_HEAD, pos):
            return None
        n = int.from_bytes(buf[pos + 48:pos + 56], "little")
        if not 0 < n <= _MAX_NAME:
            return None
        padded = n + (-n % 8)
        if len(buf) - pos < 56 + padded + 88:  # name, the shortest node head and the size
            if not self._fill(56 + padded + 88):
                return None
            buf, pos = self._buf, self._pos
        start = pos + 56
        name = buf[start:start + n]
        if (buf[start + n:start + padded] != _PAD[padded - n] or b"/" in name or b"\0" in name
                or name in (b".", b"..") or (previous is not None and name <= previous)):
            return None
        at = start + padded
        if buf.startswith(_REG_PLAIN, at):
            executable, at = False, at + len(_REG_PLAIN)
        elif buf.startswith(_REG_EXEC[:len(_REG) + 8], at):
            if len(buf) - at < len(_REG_EXEC) + 8:
                if not self._fill(at - pos + len(_REG_EXEC) + 8):
                    return None
                buf, pos = self._buf, self._pos
                at = pos + 56 + padded
            if not buf.startswith(_REG_EXEC, at):
                return None
            executable, at = True, at + len(_REG_EXEC)
        else:
            return None
        size = int.from_bytes(buf[at:at + 8], "little")
        self._pos = at + 8
        self._file(dest + b"/" + name, size, executable)
        pad = -size % 8
        if len(self._buf) - self._pos >= pad + 32 and self._buf.startswith(_PAD[pad] + _TAIL, self._pos):
            self._pos += pad + 32
        else:
            self.padding(size)
            self.expect(b")")
            self.expect(b")")
        return name


def restore_from(more: Callable[[int], bytes], dest: Path, *, canonical: bool = False) -> int:
    """Rebuild the NAR read through `more` (see `Parser`) at `dest`, which must not exist.

    Returns the bytes taken from `more` after the NAR's end (0 for an exact reader). On any error
    the partial tree is removed.
    """
    if os.path.lexists(dest):
        raise NarError(f"cannot restore a NAR to {str(dest)!r}: it already exists",
                       hint="Restore into a fresh path.", code="nar-malformed")
    try:
        if implementation() == "c":
            return _restore_c(more, dest, canonical)
        parser = Parser(more, canonical)
        parser.nar(os.fsencode(dest))
    except BaseException as e:
        remove_tree(dest)
        if isinstance(e, OSError):
            raise NarError(f"cannot restore NAR to {str(dest)!r}: {e.strerror or e}",
                           hint="Check that the destination is writable.", code="nar-restore-failed") from e
        raise
    return parser.leftover


def implementation() -> str:
    """"c" when restores go through `_narc`, "python" when it is not built or TDX_NAR_PYTHON=1 (tests, debugging)."""
    return "python" if _narc is None or os.environ.get("TDX_NAR_PYTHON") == "1" else "c"


def _restore_c(more: Callable[[int], bytes], dest: Path, canonical: bool) -> int:
    """`restore_from` through the C restorer: it asks `more` for what the current token lacks (so an
    exact reader is never read past the NAR) and is fed whatever comes back."""
    parent = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        restorer = _narc.Restorer(parent, os.fsencode(dest.name), canonical, _CREATE_CANONICAL, CANONICAL_TIME)
        try:
            while need := restorer.need:
                data = more(need)
                if not data:
                    restorer.eof()
                restorer.feed(data)
        except _narc.Malformed as e:
            raise _malformed(str(e)) from None
        finally:
            restorer.close()
        return restorer.leftover
    finally:
        os.close(parent)


def restore(read: Callable[[int], bytes], dest: Path, *, canonical: bool = False) -> None:
    """Rebuild the tree of one NAR read from `read` at `dest`, which must not exist.

    Reads exactly the NAR and nothing after it. On any error the partial tree is removed.
    Files get 0644/0755, directories 0755, unless `canonical`: then the tree is created as
    `normalise_tree` leaves it (0444/0555, directories 0555, times 1).
    """
    restore_from(read, dest, canonical=canonical)
