"""The measurement manifest of a bootable image: `measurements.json` beside `image.efi` and `image.disk` (L2).

Computed at build time from the image's own bytes and the pinned firmware with the default platform
profile: MRTD, RTMR1, RTMR2, the events, RTMR0 listed as missing (it needs blobs from the target host).
Never writes a value the predictor did not compute; the firmware's store path is written so the image's
references name it. Also finds the files of a built image for `tdx measure`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tdxstore.errors import ImageError
from tdxstore.measure import Register, load_profile, predict_image

UKI_FILE = "image.efi"
DISK_FILE = "image.disk"
MANIFEST_FILE = "measurements.json"
DEFAULT_PROFILE = "qemu-tdx-upstream"
MANIFEST_VERSION = 1


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """The measured files of a built bootable image (a store path's real directory)."""

    root: Path
    uki: Path
    disk: Path | None

    @classmethod
    def at(cls, root: Path) -> BuiltImage:
        """The image files below `root` (a store path or a result link); ImageError if it holds no UKI."""
        uki = root / UKI_FILE
        if not uki.is_file():
            raise ImageError(f"{str(root)!r} is not a built bootable image (no {UKI_FILE})",
                             hint="build the image with format 'uki' (`tdx build -f uki`) or pass a UKI file",
                             code="image-not-bootable")
        disk = root / DISK_FILE
        return cls(root, uki, disk if disk.is_file() else None)


def manifest(uki: bytes, disk: bytes, firmware: bytes, firmware_path: str, firmware_label: str,
             profile_name: str = DEFAULT_PROFILE) -> dict[str, object]:
    """The manifest of an image (pure over bytes): predicted values, what is missing, the boot chain."""
    profile = load_profile(profile_name)
    prediction = predict_image(uki, disk, firmware, profile)
    if prediction.mrtd is None or any(prediction.rtmrs[r] is None for r in (Register.RTMR1, Register.RTMR2)):
        raise ImageError("the build could not predict MRTD, RTMR1 and RTMR2 of its own image",
                         detail=json.dumps(prediction.to_json()["missing"]), code="measure-incomplete")
    data = prediction.to_json()
    data["boot_chain"] = {**prediction.boot_chain, "firmware": firmware_label}
    data["firmware_store_path"] = firmware_path
    data["files"] = {"uki": UKI_FILE, "disk": DISK_FILE}
    data["version"] = MANIFEST_VERSION
    return data


def write_manifest(out: Path, firmware_file: Path, firmware_path: str, firmware_label: str) -> None:
    """Write `measurements.json` into the image directory `out` (holding image.efi and image.disk)."""
    data = manifest((out / UKI_FILE).read_bytes(), (out / DISK_FILE).read_bytes(), firmware_file.read_bytes(),
                    firmware_path, firmware_label)
    (out / MANIFEST_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

