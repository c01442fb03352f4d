"""Platform profiles: named, versioned data describing the VMM side of a TD (what the image cannot tell).

A profile fixes the page-add order (MRTD), memory and vCPUs, the boot path, the firmware layout class and
the platform blobs RTMR0 needs (ACPI table-loader, RSDP and tables, BootOrder and Boot#### data), which are
files captured on the target host. Loading reads JSON and blob files; nothing here computes a digest.
Invariant: a `Profile` is valid once built; absent blobs are listed by `missing_blobs()`, never invented.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tdxstore.errors import MeasureError
from tdxstore.measure.rtmr0 import boot_order
from tdxstore.measure.tdvf import PageAddOrder

PROFILE_DIR = Path(__file__).parent / "profiles"
BOOT_PATHS = ("uki-gpt-removable",)  # firmware boot manager starts EFI/BOOT/BOOTX64.EFI = the UKI
FIRMWARE_LAYOUTS = ("edk2-pre-202505",)
ACPI_LOADER = "acpi-table-loader"
BOOT_ORDER = "boot-order"
_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


def acpi_blob_name(fw_cfg_name: str) -> str:
    """Blob file name of an ACPI fw_cfg item: "etc/acpi/tables" -> "acpi-tables"."""
    return "acpi-" + fw_cfg_name.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Profile:
    """One platform profile; `blobs` maps blob names (see `required_blobs`) to their bytes."""

    name: str
    version: int
    vmm: str
    page_add_order: PageAddOrder
    memory_mib: int
    vcpus: int
    boot_path: str
    firmware_layout: str
    acpi_blobs: tuple[str, ...]
    blobs: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        problems = []
        if not _NAME.match(self.name):
            problems.append(f"name {self.name!r} is not lower-case letters, digits, '.' and '-'")
        if self.version < 1 or self.memory_mib < 64 or self.vcpus < 1:
            problems.append("version, memory_mib (≥ 64) and vcpus must be positive")
        if self.boot_path not in BOOT_PATHS:
            problems.append(f"boot_path {self.boot_path!r} is not one of {', '.join(BOOT_PATHS)}")
        if self.firmware_layout not in FIRMWARE_LAYOUTS:
            problems.append(
                f"firmware_layout {self.firmware_layout!r} is not one of {', '.join(FIRMWARE_LAYOUTS)}"
            )
        if problems:
            raise MeasureError(
                f"invalid platform profile {self.name!r}: {'; '.join(problems)}", code="measure-bad-profile"
            )

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def memory(self) -> int:
        return self.memory_mib << 20

    def required_blobs(self) -> list[str]:
        """Every blob RTMR0 needs, in measurement order (Boot#### names follow from BootOrder)."""
        names = [ACPI_LOADER, *(acpi_blob_name(b) for b in self.acpi_blobs), BOOT_ORDER]
        if BOOT_ORDER in self.blobs:
            names += [f"boot-{n:04x}" for n in boot_order(self.blobs[BOOT_ORDER])]
        return names

    def missing_blobs(self) -> list[str]:
        return [n for n in self.required_blobs() if n not in self.blobs]

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "vmm": self.vmm,
            "page_add_order": self.page_add_order.value,
            "memory_mib": self.memory_mib,
            "vcpus": self.vcpus,
            "boot_path": self.boot_path,
            "firmware_layout": self.firmware_layout,
            "blobs": sorted(self.blobs),
        }


def builtin_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def _read_blobs(directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        raise MeasureError(
            f"platform blob directory {str(directory)!r} does not exist", code="measure-bad-profile"
        )
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def load_profile(name_or_path: str, blob_dir: Path | None = None) -> Profile:
    """A built-in profile by name or a profile JSON file; blobs from its "blobs" map and from `blob_dir`."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = PROFILE_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise MeasureError(
            f"unknown platform profile {name_or_path!r}",
            hint=f"Use one of {', '.join(builtin_profiles())} or a profile .json file.",
            code="measure-unknown-profile",
        )
    try:
        raw = json.loads(path.read_text())
        blobs = {k: (path.parent / v).read_bytes() for k, v in raw.get("blobs", {}).items()}
        if blob_dir is not None:
            blobs.update(_read_blobs(blob_dir))
        return Profile(
            raw["name"],
            int(raw["version"]),
            raw.get("vmm", ""),
            PageAddOrder(raw["page_add_order"]),
            int(raw["memory_mib"]),
            int(raw["vcpus"]),
            raw["boot_path"],
            raw["firmware_layout"],
            tuple(raw.get("acpi_blobs", ())),
            blobs,
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MeasureError(
            f"cannot read platform profile {str(path)!r}: {e}", code="measure-bad-profile"
        ) from e
