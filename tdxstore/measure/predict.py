"""Composing the predicted measurements of a TD boot: events from every source, replayed into registers.

Pure over bytes (UKI, disk image, firmware) plus a `Profile`. Must never emit a value it cannot stand
behind: a register is computed only when every input it depends on is present and of a known layout;
otherwise `Prediction.missing` lists what is absent. MRTD needs only the firmware and the page-add order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from tdxstore.errors import MeasureError
from tdxstore.measure.event import Event, Register, replay
from tdxstore.measure.fat import read_file
from tdxstore.measure.gpt import is_gpt, parse_gpt, partition_bytes
from tdxstore.measure.profile import ACPI_LOADER, BOOT_ORDER, Profile, acpi_blob_name
from tdxstore.measure.rtmr0 import acpi_events, boot_order, boot_variable_events, firmware_events
from tdxstore.measure.rtmr1 import rtmr1_events
from tdxstore.measure.rtmr2 import rtmr2_events
from tdxstore.measure.tdvf import SectionType, compute_mrtd, parse_tdvf, section_bytes
from tdxstore.measure.uki import parse_uki

BOOT_FILE = "EFI/BOOT/BOOTX64.EFI"
PREDICTED = (Register.RTMR0, Register.RTMR1, Register.RTMR2)
NEEDS_IMAGE = "an image (UKI and disk): pass IMAGE"

# Firmware builds whose RTMR0 event layout is known (sha256 of the image -> (what it is, layout class)).
KNOWN_FIRMWARE = {
    "14954040cc754ade0c625ac3470ea46d4c14318b5b1396de4ef77090203d76db": (
        "Debian trixie ovmf 2025.02-8+deb13u1 OVMF.fd",
        "edk2-pre-202505",
    ),
    "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773": (
        "Debian bookworm ovmf 2022.11-6+deb12u2 OVMF.fd",
        "edk2-pre-202505",
    ),
}


@dataclass(frozen=True, slots=True)
class Prediction:
    """Predicted MRTD and RTMR0–2 (None where an input is missing), their events and the boot chain."""

    profile: str
    firmware: str | None
    mrtd: bytes | None
    rtmrs: dict[Register, bytes | None]
    events: tuple[Event, ...] = field(repr=False)
    missing: dict[Register, tuple[str, ...]]
    boot_chain: dict[str, str]

    def to_json(self) -> dict[str, object]:
        values: dict[str, str | None] = {"MRTD": self.mrtd.hex() if self.mrtd else None}
        values.update({r.value: (v.hex() if v else None) for r, v in self.rtmrs.items()})
        return {
            "profile": self.profile,
            "firmware": self.firmware,
            "measurements": values,
            "missing": {r.value: list(m) for r, m in self.missing.items() if m},
            "boot_chain": self.boot_chain,
            "events": [e.to_json() for e in self.events],
        }


def _rtmr0(firmware: bytes, fw_sha: str, profile: Profile) -> tuple[list[Event], list[str]]:
    missing = [f"platform blob {n!r}" for n in profile.missing_blobs()]
    known = KNOWN_FIRMWARE.get(fw_sha)
    if known is None:
        missing.append(f"a known RTMR0 layout for firmware sha256 {fw_sha}")
        if not profile.missing_blobs():
            raise MeasureError(
                f"unknown firmware layout: sha256 {fw_sha} is none of the known builds "
                f"({'; '.join(v[0] for v in KNOWN_FIRMWARE.values())}), so its RTMR0 events are unknown",
                hint="Use a pinned Debian OVMF.fd, or verify the firmware's event layout and add it.",
                code="measure-firmware-unknown",
            )
    elif known[1] != profile.firmware_layout:
        raise MeasureError(
            f"firmware {known[0]} has layout {known[1]}, the profile expects {profile.firmware_layout}",
            code="measure-firmware-unknown",
        )
    if missing:
        return [], missing
    sections = parse_tdvf(firmware)
    events = firmware_events(sections, section_bytes(firmware, SectionType.CFV), profile.memory)
    acpi = [(name, profile.blobs[acpi_blob_name(name)]) for name in profile.acpi_blobs]
    events += acpi_events(profile.blobs[ACPI_LOADER], acpi)
    order = profile.blobs[BOOT_ORDER]
    events += boot_variable_events(order, [profile.blobs[f"boot-{n:04x}"] for n in boot_order(order)])
    return events, []


def predict_image(uki: bytes, disk_gpt: bytes | None, firmware: bytes | None, profile: Profile) -> Prediction:
    """Predict MRTD and RTMR0–2 of booting `uki` from the disk `disk_gpt` with `firmware` on `profile`."""
    image = parse_uki(uki)
    events = rtmr2_events(image)
    missing: dict[Register, list[str]] = {r: [] for r in PREDICTED}
    if disk_gpt is not None:
        events = rtmr1_events(image, parse_gpt(disk_gpt)) + events
    else:
        missing[Register.RTMR1].append("the GPT disk image (its partition table is measured)")
    mrtd, fw_label = None, None
    if firmware is not None:
        fw_sha = hashlib.sha256(firmware).hexdigest()
        fw_label = KNOWN_FIRMWARE.get(fw_sha, (f"sha256:{fw_sha}", ""))[0]
        mrtd = compute_mrtd(firmware, profile.page_add_order)
        rtmr0, missing0 = _rtmr0(firmware, fw_sha, profile)
        events = rtmr0 + events
        missing[Register.RTMR0] += missing0
    else:
        missing[Register.RTMR0].append("the firmware image")
    replayed = replay(events)
    rtmrs = {r: (None if missing[r] else replayed[r]) for r in PREDICTED}
    chain = {"stub": image.stub_version or "unknown", "kernel": image.kernel_release or "unknown"}
    osrel = image.os_release
    chain["os"] = " ".join(
        v for v in (osrel.get("ID"), osrel.get("VERSION_ID") or osrel.get("IMAGE_VERSION")) if v
    )
    return Prediction(
        profile.label, fw_label, mrtd, rtmrs, tuple(events), {r: tuple(m) for r, m in missing.items()}, chain
    )


def predict_firmware(firmware: bytes, profile: Profile) -> Prediction:
    """MRTD (and RTMR0 when the profile's blobs make it predictable) from the firmware alone.

    RTMR1 and RTMR2 measure the boot loader, the disk's partition table and the UKI: they are listed as
    missing, "an image", never guessed.
    """
    fw_sha = hashlib.sha256(firmware).hexdigest()
    fw_label = KNOWN_FIRMWARE.get(fw_sha, (f"sha256:{fw_sha}", ""))[0]
    mrtd = compute_mrtd(firmware, profile.page_add_order)
    events, missing0 = _rtmr0(firmware, fw_sha, profile)
    missing = {Register.RTMR0: tuple(missing0),
               Register.RTMR1: (NEEDS_IMAGE,), Register.RTMR2: (NEEDS_IMAGE,)}
    replayed = replay(events)
    rtmrs = {r: (None if missing[r] else replayed[r]) for r in PREDICTED}
    return Prediction(profile.label, fw_label, mrtd, rtmrs, tuple(events), missing, {})


def split_image(data: bytes) -> tuple[bytes, bytes | None]:
    """(UKI bytes, disk bytes or None) from a file that is either a UKI or a GPT disk image with an ESP."""
    if not is_gpt(data):
        return data, None
    gpt = parse_gpt(data)
    return read_file(partition_bytes(data, gpt.esp()), BOOT_FILE), data


def require_complete(prediction: Prediction) -> None:
    """MeasureError(measure-missing-inputs) listing every missing input, if any."""
    lines = [f"{reg}: {item}" for reg, items in prediction.missing.items() for item in items]
    if prediction.mrtd is None:
        lines.insert(0, "MRTD: the firmware image")
    if lines:
        regs = sorted({line.split(":", 1)[0] for line in lines})
        raise MeasureError(
            f"cannot predict {', '.join(regs)}: inputs are missing",
            hint="Pass --firmware and the platform blobs captured on the target host with --blobs "
            "DIR (files acpi-table-loader, acpi-rsdp, acpi-tables, boot-order, boot-XXXX), "
            "or --partial to accept a partial prediction.",
            detail="missing:\n  " + "\n  ".join(lines),
            code="measure-missing-inputs",
        )
