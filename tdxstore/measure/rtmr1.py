"""RTMR1 (PCR 2–6) events of "firmware boot manager starts EFI/BOOT/BOOTX64.EFI = a UKI on a GPT disk".

Pure: built from the UKI bytes and the disk's GPT. Must not invent a GPT: without a disk image the GPT event
is reported missing by the caller. Order (edk2 TdTcg2Dxe OnReadyToBoot / DxeTpm2MeasureBootLib /
OnExitBootServices): boot action, the single TDX separator, GPT, UKI Authenticode, kernel Authenticode
(sd-stub LoadImage of .linux; not measured under Secure Boot), the two ExitBootServices actions.
"""

from __future__ import annotations

from tdxstore.measure.authenticode import authenticode_sha384
from tdxstore.measure.event import Event, Register, sha384
from tdxstore.measure.gpt import Gpt
from tdxstore.measure.uki import Uki

CALLING_EFI_APP = b"Calling EFI Application from Boot Option"
EXIT_BOOT_SERVICES = b"Exit Boot Services Invocation"
EXIT_BOOT_SERVICES_OK = b"Exit Boot Services Returned with Success"
SEPARATOR = sha384(bytes(4))


def action(register: Register, text: bytes) -> Event:
    """An EV_EFI_ACTION event: the digest is over the ASCII string without NUL."""
    return Event(register, "EV_EFI_ACTION", f"action {text.decode('ascii')!r}", sha384(text))


def separator(register: Register) -> Event:
    return Event(register, "EV_SEPARATOR", "separator", SEPARATOR)


def gpt_event(gpt: Gpt) -> Event:
    return Event(
        Register.RTMR1,
        "EV_EFI_GPT_EVENT",
        f"GPT table (disk {gpt.disk_guid}, {len(gpt.partitions)} partitions)",
        sha384(gpt.uefi_gpt_data()),
    )


def boot_events(uki: Uki) -> tuple[Event, Event]:
    """The two images the firmware measures: the UKI itself and the kernel sd-stub loads from .linux."""
    return (
        Event(
            Register.RTMR1,
            "EV_EFI_BOOT_SERVICES_APPLICATION",
            "UKI Authenticode",
            authenticode_sha384(uki.data, uki.layout),
        ),
        Event(
            Register.RTMR1,
            "EV_EFI_BOOT_SERVICES_APPLICATION",
            "kernel Authenticode (UKI section .linux)",
            authenticode_sha384(uki.sections[".linux"]),
        ),
    )


def rtmr1_events(uki: Uki, gpt: Gpt) -> list[Event]:
    """Every RTMR1 event of one successful boot of `uki` from the disk with `gpt`."""
    app, kernel = boot_events(uki)
    return [
        action(Register.RTMR1, CALLING_EFI_APP),
        separator(Register.RTMR1),
        gpt_event(gpt),
        app,
        kernel,
        action(Register.RTMR1, EXIT_BOOT_SERVICES),
        action(Register.RTMR1, EXIT_BOOT_SERVICES_OK),
    ]
