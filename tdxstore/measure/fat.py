"""A read-only FAT12/16/32 reader: just enough to take EFI/BOOT/BOOTX64.EFI out of an ESP image.

Pure functions over partition bytes; it must not write, and it matches 8.3 short names only (the names
the firmware's default boot path needs). Invariants: cluster chains are bounded (no loops), reads never
run past the partition.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from tdxstore.errors import MeasureError


class _Fat:
    def __init__(self, part: memoryview) -> None:
        self.part = part
        if len(part) < 512 or bytes(part[510:512]) != b"\x55\xaa":
            raise _bad("the EFI system partition is not a FAT file system (no boot signature)")
        bps, self.spc, reserved, nfats, root_entries, total16 = struct.unpack_from("<HBHBHH", part, 11)
        (fatsz16,) = struct.unpack_from("<H", part, 22)
        total32, fatsz32, _flags, _ver, self.root_cluster = struct.unpack_from("<IIHHI", part, 32)
        if bps not in (512, 1024, 2048, 4096) or self.spc == 0 or nfats == 0:
            raise _bad("the EFI system partition has a malformed FAT boot sector")
        self.bps = bps
        fatsz = fatsz16 or fatsz32
        self.fat_off = reserved * bps
        self.root_off = (reserved + nfats * fatsz) * bps
        root_sectors = (root_entries * 32 + bps - 1) // bps
        self.data_off = self.root_off + root_sectors * bps
        total = total16 or total32
        clusters = (total - reserved - nfats * fatsz - root_sectors) // self.spc
        self.bits = 12 if clusters < 4085 else 16 if clusters < 65525 else 32
        self.root_size = root_entries * 32
        self.max_cluster = clusters + 1

    def next_cluster(self, c: int) -> int:
        if self.bits == 12:
            v = struct.unpack_from("<H", self.part, self.fat_off + c + c // 2)[0]
            v = v >> 4 if c & 1 else v & 0xFFF
            return int(v) if v < 0xFF8 else -1
        if self.bits == 16:
            v = struct.unpack_from("<H", self.part, self.fat_off + 2 * c)[0]
            return int(v) if v < 0xFFF8 else -1
        v = struct.unpack_from("<I", self.part, self.fat_off + 4 * c)[0] & 0x0FFFFFFF
        return int(v) if v < 0x0FFFFFF8 else -1

    def chain(self, first: int) -> bytes:
        out, c, csize = bytearray(), first, self.bps * self.spc
        for _ in range(self.max_cluster):
            if c < 2 or c > self.max_cluster:
                break
            off = self.data_off + (c - 2) * csize
            out += self.part[off : off + csize]
            c = self.next_cluster(c)
            if c < 0:
                return bytes(out)
        raise _bad("a FAT cluster chain is broken or loops")

    def entries(self, directory: bytes) -> Iterator[tuple[str, int, int, int]]:
        for off in range(0, len(directory) - 31, 32):
            e = directory[off : off + 32]
            if e[0] == 0:
                return
            if e[0] == 0xE5 or e[11] == 0x0F or e[11] & 0x08:
                continue
            base, ext = e[:8].decode("latin-1").rstrip(), e[8:11].decode("latin-1").rstrip()
            hi, lo, size = (
                struct.unpack_from("<H", e, 20)[0],
                struct.unpack_from("<H", e, 26)[0],
                struct.unpack_from("<I", e, 28)[0],
            )
            yield (f"{base}.{ext}" if ext else base), e[11], (hi << 16) | lo, size


def _bad(message: str) -> MeasureError:
    return MeasureError(
        message, hint="Pass a disk image whose ESP is a valid FAT file system.", code="measure-bad-esp"
    )


def read_file(part: memoryview, path: str) -> bytes:
    """The content of `path` (e.g. "EFI/BOOT/BOOTX64.EFI", case-insensitive 8.3 names) in a FAT image."""
    fs = _Fat(part)
    directory = (
        fs.chain(fs.root_cluster) if fs.bits == 32 else bytes(part[fs.root_off : fs.root_off + fs.root_size])
    )
    names = [n for n in path.strip("/").split("/") if n]
    for depth, name in enumerate(names):
        last = depth == len(names) - 1
        for ename, attr, cluster, size in fs.entries(directory):
            if ename.upper() != name.upper():
                continue
            if last and not attr & 0x10:
                return fs.chain(cluster)[:size] if size else b""
            if not last and attr & 0x10:
                directory = fs.chain(cluster)
                break
        else:
            raise MeasureError(
                f"the EFI system partition has no {'/'.join(names[: depth + 1])!r}",
                hint="The boot path measured is the firmware default EFI/BOOT/BOOTX64.EFI.",
                code="measure-no-boot-file",
            )
    raise _bad(f"{path!r} is a directory")
