"""A bootable GPT disk image holding one UKI: the "UKI on a GPT disk" boot path of TD firmware (L2).

One EFI system partition (FAT32) at 1 MiB with the UKI as `EFI/BOOT/BOOTX64.EFI`, the removable-media
path the firmware's boot manager tries. The image is a pure function of the UKI's bytes: fixed disk and
partition GUIDs, `mkfs.fat --invariant`, file times from SOURCE_DATE_EPOCH. Tools come from Debian
(dosfstools, mtools, fdisk) through the process runner; nothing here writes outside `work` and `out`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tdxstore.errors import ImageError
from tdxstore.sandbox import process

BOOT_FILE = "EFI/BOOT/BOOTX64.EFI"
SECTOR = 512
MIB = 1 << 20
ESP_START_MIB = 1
MIN_ESP_MIB = 64
# Fixed identifiers: the GPT header and entry are measured into RTMR1, so they must not vary.
DISK_GUID = "5D1C0A7E-3F2B-4C69-9E4D-7D1F6A2B8C30"
ESP_GUID = "9B2F6C41-0E7A-4D35-A8C2-3E5F1B7D9A64"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
# 2000-01-01T00:00:00Z: FAT cannot hold dates before 1980 (store files carry mtime 1).
EPOCH = 946684800
TOOLS = ("mkfs.fat", "mmd", "mcopy", "sfdisk")


def esp_size_mib(payload: int) -> int:
    """ESP size for `payload` bytes of files: FAT32 overhead (~1.5%) plus slack, at least 64 MiB."""
    return max(MIN_ESP_MIB, -(-payload * 103 // 100 // MIB) + 8)


def sfdisk_script(esp_mib: int) -> str:
    """The sfdisk input of the disk (pure)."""
    return (
        f"label: gpt\nlabel-id: {DISK_GUID}\nunit: sectors\n"
        f"start={ESP_START_MIB * MIB // SECTOR}, size={esp_mib * MIB // SECTOR}, type={ESP_TYPE}, "
        f'uuid={ESP_GUID}, name="ESP"\n'
    )


def _check_tools() -> None:
    missing = [t for t in TOOLS if process.which(t, process.host_env()["PATH"]) is None]
    if missing:
        raise ImageError(f"cannot make a disk image: {', '.join(missing)} not installed",
                         hint="apt-get install dosfstools mtools fdisk", code="disk-tools-missing")


def make_esp(uki: Path, esp: Path) -> None:
    """A FAT32 file system image at `esp` holding `uki` as EFI/BOOT/BOOTX64.EFI."""
    size = esp_size_mib(uki.stat().st_size)
    with open(esp, "wb") as f:
        f.truncate(size * MIB)
    env = process.host_env({"SOURCE_DATE_EPOCH": str(EPOCH), "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"})
    process.run(["mkfs.fat", "--invariant", "-F", "32", "-n", "ESP", os.fspath(esp)], env=env, what="mkfs.fat")
    process.run(["mmd", "-i", os.fspath(esp), "::EFI", "::EFI/BOOT"], env=env, what="mmd")
    process.run(["mcopy", "-i", os.fspath(esp), os.fspath(uki), f"::{BOOT_FILE}"], env=env, what="mcopy")


def make_disk(uki: Path, out: Path, work: Path) -> None:
    """Write the GPT disk image of `uki` to `out` (scratch files go to the directory `work`)."""
    _check_tools()
    if not uki.is_file():
        raise ImageError(f"cannot make a disk image: {str(uki)!r} is not a file", code="disk-no-uki")
    esp = work / "esp.img"
    make_esp(uki, esp)
    esp_mib = esp.stat().st_size // MIB
    with open(out, "wb") as f:
        # 1 MiB in front (protective MBR, GPT), 1 MiB behind (backup GPT).
        f.truncate((ESP_START_MIB + esp_mib + 1) * MIB)
    process.run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", os.fspath(out)],
                input=sfdisk_script(esp_mib).encode(), what="sfdisk")
    with open(esp, "rb") as src, open(out, "r+b") as dst:
        dst.seek(ESP_START_MIB * MIB)
        shutil.copyfileobj(src, dst, 4 * MIB)
    esp.unlink()
