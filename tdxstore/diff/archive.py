"""The members of archives an image is made of: tar (root file systems) and cpio newc (initrds), as `Entry`s.

Reads only; never extracts to disk and never follows a link. An initrd is a concatenation of cpio archives,
each plain or compressed (zstd, gzip, xz) to its end, as the kernel's initramfs unpacker reads it. Entry
names are normalised (no leading "./" or "/"); file contents are hashed, and kept when small or named in
`KEEP` so the report can show a text diff. Malformed input is a DiffError, never a partial listing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from tdxstore.errors import DiffError

KEEP_BYTES = 64 << 10  # file contents up to this size are kept for a readable diff
KEEP = ("var/lib/dpkg/status",)  # kept whatever their size: the package list is read from them
CPIO_MAGIC = b"070701"
CPIO_CRC_MAGIC = b"070702"
_CPIO_HEADER = 110
_COMPRESSED = {b"\x28\xb5\x2f\xfd": "zstd", b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz"}
_KINDS = {0o100000: "file", 0o040000: "dir", 0o120000: "symlink", 0o020000: "char", 0o060000: "block",
          0o010000: "fifo", 0o140000: "socket"}


@dataclass(frozen=True, slots=True)
class Entry:
    """One archive member as compared: kind, permissions, owner, size, content hash, link target."""

    kind: str
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int
    sha256: str
    link: str = ""
    data: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in (*_KINDS.values(), "hardlink"):
            raise DiffError(f"unknown archive member kind {self.kind!r}", code="diff-bad-archive")

    def fields(self) -> dict[str, str]:
        """The compared fields as text (what a report shows)."""
        return {"kind": self.kind, "mode": f"{self.mode:04o}", "owner": f"{self.uid}:{self.gid}",
                "mtime": str(self.mtime), "size": str(self.size), "sha256": self.sha256, "link": self.link}


def _keep(name: str, data: bytes) -> bytes | None:
    return data if len(data) <= KEEP_BYTES or name in KEEP else None


def _name(raw: str) -> str:
    return raw.removeprefix("./").lstrip("/").rstrip("/") or "."


def tar_entries(source: Path | bytes) -> dict[str, Entry]:
    """Every member of a tar archive (plain or compressed, as tarfile reads it) by normalised name."""
    out: dict[str, Entry] = {}
    try:
        with (tarfile.open(fileobj=io.BytesIO(source)) if isinstance(source, bytes)
              else tarfile.open(source)) as tf:
            for m in tf:
                name, digest, data = _name(m.name), "", None
                if m.isfile():
                    f = tf.extractfile(m)
                    assert f is not None
                    content = f.read()
                    digest, data = hashlib.sha256(content).hexdigest(), _keep(name, content)
                kind = ("file" if m.isfile() else "dir" if m.isdir() else "symlink" if m.issym() else
                        "hardlink" if m.islnk() else "char" if m.ischr() else "block" if m.isblk() else "fifo")
                out[name] = Entry(kind, m.mode & 0o7777, m.uid, m.gid, int(m.mtime), m.size if m.isfile() else 0,
                                  digest, m.linkname, data)
    except (tarfile.TarError, EOFError, OSError, zstandard.ZstdError) as e:
        raise DiffError(f"cannot read the tar archive: {e}", code="diff-bad-archive") from e
    return out


def compression(data: bytes | memoryview) -> str | None:
    """The compression an initrd segment starts with (zstd, gzip, xz), or None."""
    head = bytes(data[:6])
    return next((name for magic, name in _COMPRESSED.items() if head.startswith(magic)), None)


def decompress(data: bytes, kind: str) -> bytes:
    """All frames/members of a compressed stream, as the kernel decompresses an initrd segment."""
    try:
        if kind == "zstd":
            return _zstd_frames(data)
        if kind == "gzip":
            return gzip.decompress(data)
        return lzma.decompress(data)
    except (zstandard.ZstdError, OSError, lzma.LZMAError, EOFError) as e:
        raise DiffError(f"cannot decompress the {kind} initrd segment: {e}", code="diff-bad-archive") from e


def _zstd_frames(data: bytes) -> bytes:
    """Every zstd frame in `data`, stopping at zero padding (section and file alignment)."""
    parts, rest = [], data
    while rest.strip(b"\0"):
        obj = zstandard.ZstdDecompressor().decompressobj()
        parts.append(obj.decompress(rest))
        if not obj.eof:
            raise DiffError("the zstd initrd segment is cut short", code="diff-bad-archive")
        rest = obj.unused_data
    return b"".join(parts)


def is_cpio(data: bytes | memoryview) -> bool:
    head = bytes(data[:6])
    return head in (CPIO_MAGIC, CPIO_CRC_MAGIC) or compression(data) is not None


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _cpio_archive(buf: bytes, pos: int, out: dict[str, Entry]) -> int:
    """Read one newc archive starting at `pos` into `out`; returns the offset after its trailer."""
    while True:
        hdr = buf[pos:pos + _CPIO_HEADER]
        if len(hdr) < _CPIO_HEADER or hdr[:6] not in (CPIO_MAGIC, CPIO_CRC_MAGIC):
            raise DiffError(f"malformed cpio archive: no newc header at offset {pos}", code="diff-bad-archive")
        try:
            f = [int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        except ValueError as e:
            raise DiffError(f"malformed cpio header at offset {pos}", code="diff-bad-archive") from e
        mode, uid, gid, mtime, size, namesize = f[1], f[2], f[3], f[5], f[6], f[11]
        name_end = pos + _CPIO_HEADER + namesize
        name = buf[pos + _CPIO_HEADER:name_end].rstrip(b"\0").decode("utf-8", "surrogateescape")
        data_start = _align4(name_end)
        data = buf[data_start:data_start + size]
        if len(data) < size:
            raise DiffError(f"cpio member {name!r} is cut short", code="diff-bad-archive")
        pos = _align4(data_start + size)
        if name == "TRAILER!!!":
            return pos
        kind = _KINDS.get(mode & 0o170000)
        if kind is None:
            raise DiffError(f"cpio member {name!r} has an unknown file type (mode {mode:o})", code="diff-bad-archive")
        key = _name(name)
        if kind == "symlink":
            out[key] = Entry(kind, mode & 0o7777, uid, gid, mtime, 0, "", data.decode("utf-8", "surrogateescape"))
        else:
            digest = hashlib.sha256(data).hexdigest() if kind == "file" else ""
            out[key] = Entry(kind, mode & 0o7777, uid, gid, mtime, size if kind == "file" else 0, digest,
                             "", _keep(key, data) if kind == "file" else None)


def initrd_entries(data: bytes) -> dict[str, Entry]:
    """Every member of an initrd: concatenated newc archives, each plain or compressed to the end.

    A later member of the same name replaces an earlier one, as unpacking does.
    """
    out: dict[str, Entry] = {}
    pos = 0
    while pos < len(data):
        if data[pos:pos + 1] == b"\0":  # padding between archives
            pos += 1
            continue
        kind = compression(memoryview(data)[pos:])
        if kind is not None:
            inner = decompress(data[pos:], kind)
            ipos = 0
            while ipos < len(inner):
                if inner[ipos:ipos + 1] == b"\0":
                    ipos += 1
                    continue
                ipos = _cpio_archive(inner, ipos, out)
            return out
        pos = _cpio_archive(data, pos, out)
    return out


def packages(entries: dict[str, Entry]) -> dict[str, str]:
    """Installed Debian packages (name -> version) from a kept var/lib/dpkg/status; empty without one."""
    status = entries.get("var/lib/dpkg/status")
    if status is None or status.data is None:
        return {}
    found: dict[str, str] = {}
    for stanza in status.data.decode("utf-8", "replace").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[:1] != " ")
        if "Package" in fields and "installed" in fields.get("Status", "installed"):
            found[fields["Package"]] = fields.get("Version", "?")
    return found


def services(entries: dict[str, Entry]) -> dict[str, str]:
    """systemd units the file system carries (unit name -> sha256 or link target)."""
    dirs = ("etc/systemd/system/", "usr/lib/systemd/system/", "lib/systemd/system/")
    return {name.split("/systemd/system/", 1)[1]: e.sha256 or e.link for name, e in sorted(entries.items())
            if name.startswith(dirs) and name.endswith((".service", ".socket", ".timer"))}
