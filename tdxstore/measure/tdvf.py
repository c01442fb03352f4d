"""TDVF metadata of a unified OVMF image and the MRTD the TDX module computes when a VMM loads it.

Pure functions over firmware bytes (TDVF Design Guide §11; TDX module TDH.MEM.PAGE.ADD / TDH.MR.EXTEND).
Must not guess a layout: a missing footer table, metadata GUID or "TDVF" descriptor is an error naming what
was not found. Invariants: sections are 4 KiB aligned in GPA and memory size, raw data lies inside the file.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from tdxstore.errors import MeasureError

_FOOTER_GUID = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d").bytes_le
_METADATA_GUID = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2").bytes_le
PAGE = 4096
_CHUNK = 256
_ATTR_EXTEND = 1
_ATTR_PAGE_AUG = 2


class SectionType(IntEnum):
    BFV = 0
    CFV = 1
    TD_HOB = 2
    TEMP_MEM = 3
    PERM_MEM = 4
    PAYLOAD = 5
    PAYLOAD_PARAM = 6
    TD_INFO = 7


class PageAddOrder(StrEnum):
    """How the VMM interleaves PAGE.ADD and MR.EXTEND: per page (upstream KVM) or per section (QEMU 8)."""

    SINGLE_PASS = "single-pass"
    TWO_PASS = "two-pass"


@dataclass(frozen=True, slots=True)
class TdvfSection:
    """One TDVF metadata section (offsets in the file, addresses in guest-physical memory)."""

    data_offset: int
    raw_size: int
    gpa: int
    memory_size: int
    type: SectionType
    attributes: int

    @property
    def extend(self) -> bool:
        return bool(self.attributes & _ATTR_EXTEND)

    @property
    def page_aug(self) -> bool:
        return bool(self.attributes & _ATTR_PAGE_AUG)


def _no_metadata(what: str) -> MeasureError:
    return MeasureError(
        f"firmware has no TDVF metadata: {what}",
        hint="Use the unified TDX-capable OVMF.fd (Debian: /usr/share/ovmf/OVMF.fd), not the split "
        "OVMF_CODE*.fd build.",
        code="measure-no-tdvf-metadata",
    )


def _metadata_offset(fw: bytes) -> int:
    if len(fw) < 0x40 or fw[len(fw) - 0x30 : len(fw) - 0x20] != _FOOTER_GUID:
        raise _no_metadata("the OVMF GUIDed footer table (96b582de-…) is missing at the end of the image")
    end = len(fw) - 0x20
    table_len = struct.unpack_from("<H", fw, end - 18)[0]
    start = end - table_len
    pos = end - 18  # skip the footer entry's own (u16 length, GUID) trailer
    while pos > start:
        guid = fw[pos - 16 : pos]
        entry_len = struct.unpack_from("<H", fw, pos - 18)[0]
        if entry_len < 18 or pos - entry_len < start:
            raise _no_metadata(f"malformed footer table entry before offset {pos:#x}")
        if guid == _METADATA_GUID:
            return len(fw) - int(struct.unpack_from("<I", fw, pos - 22)[0])
        pos -= entry_len
    raise _no_metadata("the footer table has no TDX metadata entry (e47a6535-…)")


def parse_tdvf(fw: bytes) -> tuple[TdvfSection, ...]:
    """The TDVF metadata sections of a firmware image, in metadata order."""
    off = _metadata_offset(fw)
    if off < 0 or off + 16 > len(fw) or fw[off : off + 4] != b"TDVF":
        raise _no_metadata(f"no 'TDVF' descriptor at offset {off:#x}")
    _sig, length, version, count = struct.unpack_from("<4sIII", fw, off)
    if version != 1 or length != 16 + 32 * count or off + length > len(fw):
        raise MeasureError(
            f"unknown TDVF descriptor (version {version}, length {length}, {count} sections)",
            hint="Only TDVF metadata version 1 is known.",
            code="measure-tdvf-unknown",
        )
    sections = []
    for i in range(count):
        d_off, raw, gpa, msize, typ, attr = struct.unpack_from("<IIQQII", fw, off + 16 + 32 * i)
        if typ not in SectionType._value2member_map_:
            raise MeasureError(f"TDVF section {i} has unknown type {typ}", code="measure-tdvf-unknown")
        if gpa % PAGE or msize % PAGE or raw > msize or d_off + raw > len(fw):
            raise MeasureError(
                f"TDVF section {i} is malformed (GPA {gpa:#x}, memory {msize:#x}, raw {raw:#x} "
                f"at {d_off:#x})",
                code="measure-tdvf-malformed",
            )
        sections.append(TdvfSection(d_off, raw, gpa, msize, SectionType(typ), attr))
    return tuple(sections)


def _page_add(gpa: int) -> bytes:
    return b"MEM.PAGE.ADD".ljust(16, b"\0") + struct.pack("<Q", gpa) + bytes(104)


def _extend_records(fw: bytes, sec: TdvfSection, page: int) -> list[bytes]:
    out = []
    base = sec.data_offset + page * PAGE
    chunk = fw[base : base + PAGE].ljust(PAGE, b"\0")
    for i in range(PAGE // _CHUNK):
        gpa = sec.gpa + page * PAGE + i * _CHUNK
        out.append(b"MR.EXTEND".ljust(16, b"\0") + struct.pack("<Q", gpa) + bytes(104))
        out.append(chunk[i * _CHUNK : (i + 1) * _CHUNK])
    return out


def compute_mrtd(fw: bytes, order: PageAddOrder = PageAddOrder.SINGLE_PASS) -> bytes:
    """MRTD after the VMM adds every non-AUG TDVF page (and extends MR.EXTEND sections) in `order`."""
    h = hashlib.sha384()
    for sec in parse_tdvf(fw):
        if sec.page_aug:
            continue
        pages = sec.memory_size // PAGE
        if order is PageAddOrder.SINGLE_PASS:
            for p in range(pages):
                h.update(_page_add(sec.gpa + p * PAGE))
                if sec.extend:
                    h.update(b"".join(_extend_records(fw, sec, p)))
        else:
            for p in range(pages):
                h.update(_page_add(sec.gpa + p * PAGE))
            if sec.extend:
                for p in range(pages):
                    h.update(b"".join(_extend_records(fw, sec, p)))
    return h.digest()


def section_bytes(fw: bytes, kind: SectionType) -> bytes:
    """The raw file bytes of the first section of `kind` (e.g. the CFV that RTMR0 measures)."""
    for sec in parse_tdvf(fw):
        if sec.type is kind:
            return fw[sec.data_offset : sec.data_offset + sec.raw_size]
    raise MeasureError(f"firmware has no TDVF {kind.name} section", code="measure-tdvf-unknown")
