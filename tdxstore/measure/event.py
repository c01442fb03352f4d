"""Measurement events and register arithmetic: the vocabulary every other measure module speaks.

An `Event` is what a TDX/TCG component extends into a register: its digest is the SHA-384 of the buffer
the component hashes (not of the logged event data). Pure values only: no I/O, no knowledge of where the
events come from. Invariant: digests are always 48 bytes; registers start as 48 zero bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from tdxstore.errors import MeasureError

DIGEST_SIZE = 48
ZERO = bytes(DIGEST_SIZE)


class Register(StrEnum):
    """TDX measurement registers (MRTD is built by the TDX module, the RTMRs by extend calls)."""

    MRTD = "MRTD"
    RTMR0 = "RTMR0"
    RTMR1 = "RTMR1"
    RTMR2 = "RTMR2"
    RTMR3 = "RTMR3"


RTMRS = (Register.RTMR0, Register.RTMR1, Register.RTMR2, Register.RTMR3)

# TCG PC Client event types (TCG PC Client Platform Firmware Profile, §10.4.1).
EVENT_TYPES: dict[int, str] = {
    0x00000000: "EV_PREBOOT_CERT",
    0x00000003: "EV_NO_ACTION",
    0x00000004: "EV_SEPARATOR",
    0x00000005: "EV_ACTION",
    0x00000006: "EV_EVENT_TAG",
    0x0000000A: "EV_PLATFORM_CONFIG_FLAGS",
    0x0000000D: "EV_IPL",
    0x80000001: "EV_EFI_VARIABLE_DRIVER_CONFIG",
    0x80000002: "EV_EFI_VARIABLE_BOOT",
    0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION",
    0x80000004: "EV_EFI_BOOT_SERVICES_DRIVER",
    0x80000006: "EV_EFI_GPT_EVENT",
    0x80000007: "EV_EFI_ACTION",
    0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB",
    0x8000000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
    0x8000000B: "EV_EFI_HANDOFF_TABLES2",
    0x800000E0: "EV_EFI_VARIABLE_AUTHORITY",
}


def event_type_name(value: int) -> str:
    """The TCG name of an event type, or its hex value when unknown."""
    return EVENT_TYPES.get(value, f"0x{value:08x}")


def sha384(data: bytes) -> bytes:
    """SHA-384 of `data` (the only hash TDX registers use)."""
    return hashlib.sha384(data).digest()


@dataclass(frozen=True, slots=True)
class Event:
    """One predicted extend: register, TCG event type name, plain description, 48-byte digest."""

    register: Register
    type: str
    description: str
    digest: bytes

    def __post_init__(self) -> None:
        if len(self.digest) != DIGEST_SIZE:
            raise MeasureError(
                f"event {self.description!r} has a {len(self.digest)}-byte digest, expected {DIGEST_SIZE}",
                code="measure-bad-digest",
            )

    def to_json(self) -> dict[str, str]:
        return {
            "register": self.register.value,
            "type": self.type,
            "description": self.description,
            "digest": self.digest.hex(),
        }


def extend(register: bytes, digest: bytes) -> bytes:
    """TDG.MR.RTMR.EXTEND: R := SHA-384(R || digest)."""
    return sha384(register + digest)


def replay(events: Iterable[Event]) -> dict[Register, bytes]:
    """Extend every event into its RTMR, starting from zero; returns RTMR0..3."""
    values = dict.fromkeys(RTMRS, ZERO)
    for ev in events:
        if ev.register is Register.MRTD:
            raise MeasureError("MRTD cannot be extended by an event", code="measure-bad-register")
        values[ev.register] = extend(values[ev.register], ev.digest)
    return values
