"""PE/COFF layout and the Authenticode SHA-384 hash exactly as edk2's measured-boot code computes it.

Own parser over bytes (no pefile/lief at runtime). Must not pad, reorder or "repair" anything edk2 would not:
edk2 (`SecurityPkg/Library/DxeTpm2MeasureBootLib`, `OvmfPkg/Tcg/TdTcg2Dxe/MeasureBootPeCoff.c`) hashes the
headers minus CheckSum and the security directory entry, then section raw data sorted by file offset, then
everything after the byte count hashed so far (even when sections left gaps), minus the certificate table.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from tdxstore.errors import MeasureError

_SECURITY_DIR = 4  # EFI_IMAGE_DIRECTORY_ENTRY_SECURITY


@dataclass(frozen=True, slots=True)
class Section:
    """One section header: name, memory size and address, raw file offset and size."""

    name: str
    virtual_size: int
    virtual_address: int
    raw_offset: int
    raw_size: int


@dataclass(frozen=True, slots=True)
class PeLayout:
    """The parts of a PE header that Authenticode and section extraction need (offsets into the file)."""

    checksum_offset: int
    datadir_offset: int
    number_of_rva_and_sizes: int
    size_of_headers: int
    sections: tuple[Section, ...]
    cert_size: int


def _bad(message: str, code: str = "measure-not-pe") -> MeasureError:
    return MeasureError(
        message, hint="Pass a PE/COFF (EFI) image such as a UKI or a kernel bzImage.", code=code
    )


def _u16(data: bytes, off: int) -> int:
    if off + 2 > len(data):
        raise _bad(f"PE file truncated at offset {off:#x}", "measure-pe-truncated")
    return int(struct.unpack_from("<H", data, off)[0])


def _u32(data: bytes, off: int) -> int:
    if off + 4 > len(data):
        raise _bad(f"PE file truncated at offset {off:#x}", "measure-pe-truncated")
    return int(struct.unpack_from("<I", data, off)[0])


def parse_pe(data: bytes) -> PeLayout:
    """Parse the PE headers of `data`; raises MeasureError(measure-not-pe / measure-pe-truncated)."""
    pe = _u32(data, 0x3C) if data[:2] == b"MZ" else 0
    if data[pe : pe + 4] != b"PE\0\0":
        raise _bad(f"not a PE/COFF image: no 'PE\\0\\0' signature at offset {pe:#x}")
    nsections = _u16(data, pe + 6)
    opt_size = _u16(data, pe + 20)
    opt = pe + 24
    magic = _u16(data, opt)
    if magic == 0x20B:
        nrva_off, datadir = opt + 108, opt + 112
    elif magic == 0x10B:
        nrva_off, datadir = opt + 92, opt + 96
    else:
        raise _bad(f"unknown PE optional-header magic {magic:#x} (expected 0x10b or 0x20b)")
    nrva = _u32(data, nrva_off)
    size_of_headers = _u32(data, opt + 60)
    cert_size = _u32(data, datadir + 8 * _SECURITY_DIR + 4) if nrva > _SECURITY_DIR else 0
    table = opt + opt_size
    sections = []
    for i in range(nsections):
        off = table + 40 * i
        if off + 40 > len(data):
            raise _bad(f"PE section table truncated (section {i} of {nsections})", "measure-pe-truncated")
        raw_name = data[off : off + 8].rstrip(b"\0")
        vsize, vaddr, rsize, roff = struct.unpack_from("<IIII", data, off + 8)
        sections.append(Section(raw_name.decode("latin-1"), vsize, vaddr, roff, rsize))
    if size_of_headers > len(data):
        raise _bad(
            f"SizeOfHeaders {size_of_headers:#x} exceeds the file size {len(data):#x}", "measure-pe-truncated"
        )
    return PeLayout(opt + 64, datadir, nrva, size_of_headers, tuple(sections), cert_size)


def authenticode_sha384(data: bytes, layout: PeLayout | None = None) -> bytes:
    """Authenticode SHA-384 of a PE image with edk2's rules (what TdTcg2Dxe extends for a loaded image)."""
    pe = layout or parse_pe(data)
    view = memoryview(data)
    h = hashlib.sha384()
    h.update(view[: pe.checksum_offset])
    if pe.number_of_rva_and_sizes <= _SECURITY_DIR:
        h.update(view[pe.checksum_offset + 4 : pe.size_of_headers])
    else:
        security = pe.datadir_offset + 8 * _SECURITY_DIR
        h.update(view[pe.checksum_offset + 4 : security])
        h.update(view[security + 8 : pe.size_of_headers])
    hashed = pe.size_of_headers
    # edk2 sorts section headers by PointerToRawData with a stable insertion sort.
    for sec in sorted(pe.sections, key=lambda s: s.raw_offset):
        if sec.raw_size == 0:
            continue
        if sec.raw_offset + sec.raw_size > len(data):
            raise _bad(
                f"section {sec.name!r} raw data [{sec.raw_offset:#x}, +{sec.raw_size:#x}) lies beyond "
                f"the end of the file ({len(data):#x} bytes)",
                "measure-pe-truncated",
            )
        h.update(view[sec.raw_offset : sec.raw_offset + sec.raw_size])
        hashed += sec.raw_size
    if len(data) > hashed:
        end = len(data) - pe.cert_size
        if end > hashed:
            h.update(view[hashed:end])
        elif end < hashed:
            raise _bad(
                f"certificate table ({pe.cert_size:#x} bytes) overlaps hashed data", "measure-pe-truncated"
            )
    return h.digest()


def section_memory(data: bytes, sec: Section) -> bytes:
    """A section as loaded in memory: VirtualSize bytes (file bytes, then zeros), or raw size if 0."""
    size = sec.virtual_size or sec.raw_size
    raw = data[sec.raw_offset : sec.raw_offset + min(size, sec.raw_size)]
    if len(raw) < min(size, sec.raw_size):
        raise _bad(f"section {sec.name!r} lies beyond the end of the file", "measure-pe-truncated")
    return raw + bytes(size - len(raw))
