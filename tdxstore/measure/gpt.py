"""GPT of a disk image and the UEFI_GPT_DATA buffer the firmware measures (EV_EFI_GPT_EVENT, RTMR1).

Pure parsing over the disk image bytes (512-byte logical blocks). Must not repair or synthesise tables: the
measured buffer is the primary header as on disk (92 bytes, CRC included), the count of used entries and
those entries in table order (edk2 `Tcg2MeasureGptTable`). Invariant: a `Gpt` always has a valid signature.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field

from tdxstore.errors import MeasureError

SECTOR = 512
_HEADER_SIZE = 92  # sizeof(EFI_PARTITION_TABLE_HEADER)
ESP_TYPE = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")


@dataclass(frozen=True, slots=True)
class Partition:
    """One used GPT entry."""

    type_guid: uuid.UUID
    unique_guid: uuid.UUID
    first_lba: int
    last_lba: int
    name: str
    raw: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Gpt:
    """The primary GPT: header bytes, disk GUID and used partitions in table order."""

    header: bytes = field(repr=False)
    disk_guid: uuid.UUID
    partitions: tuple[Partition, ...]

    def uefi_gpt_data(self) -> bytes:
        """UEFI_GPT_DATA: header | u64 number of used entries | the entries."""
        return (
            self.header + struct.pack("<Q", len(self.partitions)) + b"".join(p.raw for p in self.partitions)
        )

    def esp(self) -> Partition:
        """The first EFI system partition; MeasureError when the disk has none."""
        for p in self.partitions:
            if p.type_guid == ESP_TYPE:
                return p
        raise MeasureError(
            "the disk image has no EFI system partition",
            hint="Pass a GPT disk image whose ESP holds EFI/BOOT/BOOTX64.EFI.",
            code="measure-no-esp",
        )


def is_gpt(disk: bytes) -> bool:
    """Whether `disk` starts like a GPT disk image (protective MBR + "EFI PART" at LBA 1)."""
    return disk[SECTOR : SECTOR + 8] == b"EFI PART"


def parse_gpt(disk: bytes) -> Gpt:
    """Parse the primary GPT of a disk image; MeasureError(measure-not-gpt / measure-gpt-malformed)."""
    if not is_gpt(disk):
        raise MeasureError(
            "not a GPT disk image: no 'EFI PART' signature at LBA 1",
            hint="Pass a raw GPT disk image (not qcow2) or a UKI file.",
            code="measure-not-gpt",
        )
    hdr = disk[SECTOR : SECTOR + _HEADER_SIZE]
    (header_size,) = struct.unpack_from("<I", hdr, 12)
    disk_guid = uuid.UUID(bytes_le=hdr[56:72])
    entries_lba, count, entry_size = struct.unpack_from("<QII", hdr, 72)
    if header_size < _HEADER_SIZE or entry_size < 128 or count > 4096:
        raise MeasureError(
            f"malformed GPT header (HeaderSize {header_size}, {count} entries of {entry_size} bytes)",
            code="measure-gpt-malformed",
        )
    start = entries_lba * SECTOR
    if start + count * entry_size > len(disk):
        raise MeasureError(
            "the GPT partition entry array lies beyond the end of the disk image",
            hint="Pass the whole disk image, not a truncated copy.",
            code="measure-gpt-malformed",
        )
    parts = []
    for i in range(count):
        raw = disk[start + i * entry_size : start + (i + 1) * entry_size]
        if raw[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", raw, 32)
        name = raw[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
        parts.append(
            Partition(uuid.UUID(bytes_le=raw[:16]), uuid.UUID(bytes_le=raw[16:32]), first, last, name, raw)
        )
    return Gpt(hdr, disk_guid, tuple(parts))


def partition_bytes(disk: bytes, part: Partition) -> memoryview:
    """The bytes of one partition (a view; no copy)."""
    end = (part.last_lba + 1) * SECTOR
    if end > len(disk):
        raise MeasureError(
            f"partition {part.name!r} ends beyond the disk image", code="measure-gpt-malformed"
        )
    return memoryview(disk)[part.first_lba * SECTOR : end]
