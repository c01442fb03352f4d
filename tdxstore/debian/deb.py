"""Files out of a Debian package without dpkg (L1, pure Python): the build side of `builtin:unpack-deb`.

A .deb is an `ar` archive (`!<arch>\\n`, then 60-byte member headers: name 16, mtime 12, uid 6,
gid 6, mode 8, size 10, magic "`\\n"; data padded to even length) holding `debian-binary`,
`control.tar.*` and `data.tar.{xz,gz,zst}`. Only regular files, directories and symlinks below the
requested prefixes are extracted, never outside the output; the result is normalised by the store.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import zstandard

from tdxstore._fs import extract_tar
from tdxstore.errors import BuildError

AR_MAGIC = b"!<arch>\n"


def _members(data: bytes, where: str) -> Iterator[tuple[str, bytes]]:
    if not data.startswith(AR_MAGIC):
        raise BuildError(f"{where} is not a Debian package (no ar header)", code="deb-malformed")
    pos = len(AR_MAGIC)
    while pos < len(data):
        header = data[pos:pos + 60]
        if len(header) < 60 or header[58:60] != b"`\n":
            raise BuildError(f"{where}: malformed ar member header at offset {pos}", code="deb-malformed")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip() or "0")
        body = data[pos + 60: pos + 60 + size]
        if len(body) != size:
            raise BuildError(f"{where}: ar member {name!r} is truncated", code="deb-malformed")
        yield name, body
        pos += 60 + size + (size & 1)


def _data_tar(deb: bytes, where: str) -> tarfile.TarFile:
    for name, body in _members(deb, where):
        if name.startswith("data.tar"):
            if name.endswith(".zst"):
                raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)).read()
                return tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
            return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
    raise BuildError(f"{where} has no data.tar member", code="deb-malformed")


def unpack(deb: Path, out: Path, prefixes: list[str]) -> list[str]:
    """Extract the files of `deb` below `prefixes` (relative paths) into `out`; returns what was written."""
    written = []
    with _data_tar(deb.read_bytes(), str(deb)) as tf:
        for m in tf.getmembers():
            rel = PurePosixPath(m.name.removeprefix("./"))
            if ".." in rel.parts or rel.is_absolute() or str(rel) == ".":
                continue
            if not any(rel == PurePosixPath(p) or PurePosixPath(p) in rel.parents for p in prefixes):
                continue
            if not (m.isfile() or m.isdir() or m.issym()):
                continue
            extract_tar(tf, out, [m], data=True)
            written.append(str(rel))
    if not [w for w in written if (out / w).is_file()]:
        raise BuildError(f"{deb.name} has no files below {', '.join(prefixes)}", code="deb-no-files")
    return written
