"""Where the bytes of a UKI go: its PE sections, and the directories of the initrd that hold the most.

Pure over bytes (a zstd/xz/gzip-compressed or plain newc cpio initrd); it only reports, never decides
what belongs in an image. Invariants: section sizes are the sections' memory images, directory sizes
sum the regular files below each directory (uncompressed), the largest first, ties by name.
"""

from __future__ import annotations

import gzip
import io
import lzma
from collections import Counter
from dataclasses import dataclass

import zstandard

from tdxstore.errors import MeasureError
from tdxstore.measure.uki import parse_uki

_NEWC = b"070701"
_TRAILER = "TRAILER!!!"
_S_IFMT, _S_IFREG = 0o170000, 0o100000


@dataclass(frozen=True, slots=True)
class Footprint:
    """UKI size, its sections by size, and (when asked for) the initrd's largest directories."""

    total: int
    sections: tuple[tuple[str, int], ...]
    initrd_size: int | None = None  # uncompressed bytes of regular files in the initrd
    directories: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.total < 0 or any(size < 0 for _, size in self.sections):
            raise MeasureError("a footprint cannot have negative sizes", code="measure-bad-footprint")

    def describe(self) -> list[str]:
        """Lines for a terminal: 'UKI 48.9 MB: .initrd 37.1 MB, .linux 11.6 MB, ...', then directories."""
        lines = [f"UKI {_mb(self.total)}: " + ", ".join(f"{n} {_mb(s)}" for n, s in self.sections[:4])]
        if self.initrd_size is not None:
            lines.append(f"initrd holds {_mb(self.initrd_size)} of files; largest: "
                         + ", ".join(f"{d} {_mb(s)}" for d, s in self.directories))
        return lines


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def uki_footprint(data: bytes, *, directories: int = 0, depth: int = 3) -> Footprint:
    """The footprint of a UKI; with `directories` > 0, also that many largest initrd directories
    (paths cut to `depth` components, e.g. `usr/lib/modules`)."""
    uki = parse_uki(data)
    sections = tuple(sorted(((n, len(b)) for n, b in uki.sections.items()), key=lambda x: (-x[1], x[0])))
    if directories <= 0 or ".initrd" not in uki.sections:
        return Footprint(len(data), sections)
    sizes = cpio_sizes(decompress(uki.sections[".initrd"]))
    by_dir: Counter[str] = Counter()
    for name, size in sizes.items():
        parts = name.split("/")[:-1][:depth]
        by_dir["/".join(parts) or "."] += size
    largest = tuple(sorted(by_dir.items(), key=lambda x: (-x[1], x[0]))[:directories])
    return Footprint(len(data), sections, sum(sizes.values()), largest)


def decompress(blob: bytes) -> bytes:
    """The initrd's cpio bytes: zstd, xz and gzip are recognised by their magic, others kept as is."""
    try:
        if blob.startswith(b"\x28\xb5\x2f\xfd"):
            return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)).read()
        if blob.startswith(b"\xfd7zXZ\x00"):
            return lzma.decompress(blob)
        if blob.startswith(b"\x1f\x8b"):
            return gzip.decompress(blob)
    except (zstandard.ZstdError, lzma.LZMAError, OSError, EOFError) as e:
        raise MeasureError(f"the UKI's initrd does not decompress: {e}", code="measure-bad-initrd") from e
    return blob


def cpio_sizes(data: bytes) -> dict[str, int]:
    """{path: size} of the regular files in concatenated newc cpio archives (padding between them ok)."""
    sizes: dict[str, int] = {}
    pos = 0
    while pos + 110 <= len(data):
        if data[pos:pos + 6] != _NEWC:
            if data[pos] == 0:  # zero padding between concatenated archives
                pos += 1
                continue
            raise MeasureError(f"initrd is not a newc cpio archive at byte {pos}", code="measure-bad-initrd")
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        name_end = pos + 110 + namesize
        name = data[pos + 110:name_end - 1].decode("utf-8", "replace").removeprefix("./")
        body = (name_end + 3) & ~3
        pos = (body + filesize + 3) & ~3
        if name == _TRAILER:
            continue
        if mode & _S_IFMT == _S_IFREG:
            sizes[name] = filesize
    return sizes
