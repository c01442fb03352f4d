"""RTMR0 (PCR 1 and 7) events of OVMF ≤ edk2-stable202502 booting under QEMU: the platform configuration.

Pure functions over the firmware bytes and platform blobs supplied by a profile. Must not invent platform
data: the ACPI blobs and boot variables come from the target host, the TD HOB from QEMU's documented layout
(`hw/i386/tdvf-hob.c`). Invariant: the order is TD HOB, CFV, Secure Boot variables, separator, ACPI
table-loader and allocated blobs, BootOrder, Boot#### (edk2 SecTdxHelper, TdTcg2Dxe, QemuFwCfgAcpi, BDS).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence

from tdxstore.errors import MeasureError
from tdxstore.measure.event import Event, Register, sha384
from tdxstore.measure.tdvf import PAGE, SectionType, TdvfSection

EFI_GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
EFI_IMAGE_SECURITY_DATABASE = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
SECURE_BOOT_VARIABLES = (
    (EFI_GLOBAL_VARIABLE, "SecureBoot"),
    (EFI_GLOBAL_VARIABLE, "PK"),
    (EFI_GLOBAL_VARIABLE, "KEK"),
    (EFI_IMAGE_SECURITY_DATABASE, "db"),
    (EFI_IMAGE_SECURITY_DATABASE, "dbx"),
)
_GIB = 1 << 30
_Q35_LOWMEM_LIMIT = 0xB0000000  # q35: RAM at or above this size is split at 2 GiB (gigabyte-align)
_RES_SYSTEM_MEMORY = 0
_RES_MEMORY_UNACCEPTED = 7
_RES_ATTRS = 0x7  # PRESENT | INITIALIZED | TESTED


def variable_data(guid: uuid.UUID, name: str, data: bytes) -> bytes:
    """UEFI_VARIABLE_DATA: GUID | u64 name length (chars) | u64 data length | UTF-16LE name | data."""
    return guid.bytes_le + struct.pack("<QQ", len(name), len(data)) + name.encode("utf-16-le") + data


def _ram_ranges(memory: int) -> list[tuple[int, int]]:
    if memory >= _Q35_LOWMEM_LIMIT:
        return [(0, 2 * _GIB), (4 * _GIB, 4 * _GIB + memory - 2 * _GIB)]
    return [(0, memory)]


def td_hob(sections: Sequence[TdvfSection], memory: int) -> bytes:
    """The TD HOB list QEMU builds (without END_OF_HOB_LIST): PHIT, then RAM resource descriptors."""
    accepted = sorted(
        (s.gpa, s.gpa + s.memory_size)
        for s in sections
        if s.type in (SectionType.TD_HOB, SectionType.TEMP_MEM)
    )
    pieces: list[tuple[int, int, int]] = []
    for start, end in _ram_ranges(memory):
        cur = start
        for a_start, a_end in accepted:
            if a_end <= cur or a_start >= end:
                continue
            if a_start > cur:
                pieces.append((_RES_MEMORY_UNACCEPTED, cur, a_start))
            pieces.append((_RES_SYSTEM_MEMORY, max(a_start, cur), min(a_end, end)))
            cur = min(a_end, end)
        if cur < end:
            pieces.append((_RES_MEMORY_UNACCEPTED, cur, end))
    resources = b"".join(
        struct.pack("<HHI16sIIQQ", 3, 48, 0, bytes(16), kind, _RES_ATTRS, lo, hi - lo)
        for kind, lo, hi in pieces
    )
    hob_gpa = next(s.gpa for s in sections if s.type is SectionType.TD_HOB)
    end_of_list = hob_gpa + 56 + len(resources) + 8
    phit = struct.pack("<HHIII5Q", 1, 56, 0, 9, 0, 0, 0, 0, 0, end_of_list)
    if len(phit + resources) + 8 > next(s.memory_size for s in sections if s.type is SectionType.TD_HOB):
        raise MeasureError(
            "the TD HOB for this memory layout does not fit the firmware's TD_HOB section",
            code="measure-tdvf-unknown",
        )
    return phit + resources


def firmware_events(sections: Sequence[TdvfSection], cfv: bytes, memory: int) -> list[Event]:
    """TD HOB and CFV (measured by SEC), Secure Boot variables (empty: Secure Boot off), separator."""
    if memory <= 0 or memory % PAGE:
        raise MeasureError(
            f"memory size {memory} is not a positive multiple of 4 KiB", code="measure-bad-profile"
        )
    events = [
        Event(Register.RTMR0, "EV_EFI_HANDOFF_TABLES2", "TD HOB", sha384(td_hob(sections, memory))),
        Event(
            Register.RTMR0,
            "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
            "firmware configuration volume (CFV)",
            sha384(cfv),
        ),
    ]
    for guid, name in SECURE_BOOT_VARIABLES:
        events.append(
            Event(
                Register.RTMR0,
                "EV_EFI_VARIABLE_DRIVER_CONFIG",
                f"variable {name} (empty)",
                sha384(variable_data(guid, name, b"")),
            )
        )
    events.append(Event(Register.RTMR0, "EV_SEPARATOR", "separator", sha384(bytes(4))))
    return events


def acpi_events(table_loader: bytes, blobs: Sequence[tuple[str, bytes]]) -> list[Event]:
    """QEMU fw_cfg ACPI: the table-loader script, then each allocated blob (unpatched), in order."""
    events = [
        Event(Register.RTMR0, "EV_PLATFORM_CONFIG_FLAGS", "ACPI etc/table-loader", sha384(table_loader))
    ]
    events += [
        Event(Register.RTMR0, "EV_PLATFORM_CONFIG_FLAGS", f"ACPI {name}", sha384(data))
        for name, data in blobs
    ]
    return events


def boot_order(data: bytes) -> list[int]:
    """The Boot#### numbers listed in a BootOrder variable's data."""
    return [v for (v,) in struct.iter_unpack("<H", data[: len(data) // 2 * 2])]


def boot_variable_events(order: bytes, options: Sequence[bytes]) -> list[Event]:
    """EV_EFI_VARIABLE_BOOT: BootOrder, then each Boot#### in BootOrder (digest over the variable data)."""
    events = [Event(Register.RTMR0, "EV_EFI_VARIABLE_BOOT", "variable BootOrder", sha384(order))]
    for number, option in zip(boot_order(order), options, strict=True):
        events.append(
            Event(Register.RTMR0, "EV_EFI_VARIABLE_BOOT", f"variable Boot{number:04X}", sha384(option))
        )
    return events
