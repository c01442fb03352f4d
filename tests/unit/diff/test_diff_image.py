"""Two real bootable images (trixie's ukify, the pinned kernel and stub, a GPT disk, a manifest predicted with
the pinned firmware) that differ in one thing each: the report names the PE section, the initrd's file, and
the measurements the change moves; bad input gets one error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tdxstore.diff import State, diff_images
from tdxstore.disk.manifest import manifest
from tdxstore.errors import DiffError
from tests import measure_assets
from tests.diff_assets import cpio_bytes

FIRMWARE = "/tdx/store/s86yr9flyyf05w39vayfi6lb91ypylf1-ovmf-2025.02-8+deb13u1"


def _image(root: Path, cmdline: str, message: bytes, firmware_path: str = FIRMWARE) -> Path:
    root.mkdir(parents=True)
    initrd = cpio_bytes(root.parent / f"{root.name}-initrd", {"init": b"#!/bin/sh\n", "etc/message": message},
                        compress=True)
    uki = measure_assets.build_uki(root / "image.efi", initrd, cmdline)
    disk = measure_assets.build_disk(root / "image.disk", uki)
    fw = measure_assets.trixie_ovmf().read_bytes()
    data = manifest(uki.read_bytes(), disk.read_bytes(), fw, firmware_path, "ovmf (Debian trixie)")
    (root / "measurements.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("images")
    return {
        "base": _image(work / "base", "console=ttyS0", b"hello\n"),
        "cmdline": _image(work / "cmdline", "console=ttyS0 quiet", b"hello\n"),
        "file": _image(work / "file", "console=ttyS0", b"hello, changed\n"),
    }


def test_command_line_change_names_the_section_and_moves_rtmr2(images: dict[str, Path]) -> None:
    d = diff_images(images["base"], images["cmdline"], "base", "cmdline")
    assert d.measurements is not None
    m = d.measurements
    assert m.registers["MRTD"] is State.SAME and m.registers["RTMR0"] is State.UNKNOWN
    assert m.registers["RTMR2"] is State.MOVED
    assert m.registers["RTMR1"] is State.MOVED  # the UKI's Authenticode hash covers its .cmdline
    assert m.causes()[0] == "kernel command line"
    assert m.headline().startswith("kernel command line changed: moves RTMR1, RTMR2; leaves MRTD alone")
    events = [e for e in m.events if e.register == "RTMR2" and e.a and e.a.startswith("kernel command line")]
    assert events and events[0].a == "kernel command line 'console=ttyS0'"
    assert events[0].b == "kernel command line 'console=ttyS0 quiet'"
    where = {f.where for f in d.report.findings}
    assert ("image.efi", ".cmdline") in where
    assert ("image.efi", ".initrd") not in where
    assert "because: UKI section .cmdline changed" in d.render()


def test_file_change_names_the_initrd_file_and_leaves_mrtd(images: dict[str, Path]) -> None:
    d = diff_images(images["base"], images["file"], "base", "file")
    assert d.measurements is not None
    assert d.measurements.registers["RTMR2"] is State.MOVED
    assert d.measurements.registers["MRTD"] is State.SAME
    assert d.measurements.causes()[0] == "initrd content"
    assert "initrd content: etc/message changed" in d.because()
    message = next(f for f in d.report.findings if f.where == ("image.efi", ".initrd", "etc/message"))
    assert "-hello" in message.detail and "+hello, changed" in message.detail
    # the disk's ESP holds the same UKI: one finding that points back, not the whole comparison twice
    on_disk = [f for f in d.report.findings if f.where[0] == "image.disk"]
    assert [f.summary for f in on_disk if f.where[-1] == "EFI/BOOT/BOOTX64.EFI"] == ["the same difference as image.efi"]
    out = d.to_json()
    assert out["measurements"]["moved"] == ["RTMR1", "RTMR2"]  # type: ignore[index]


def test_identical_images(images: dict[str, Path]) -> None:
    d = diff_images(images["base"], images["base"], "base", "base")
    assert d.identical and d.measurements is not None and not d.measurements.moved
    assert d.measurements.headline() == "moves no measurement; leaves MRTD, RTMR1, RTMR2 alone; RTMR0 not predicted"


def test_different_firmware_is_said_and_the_rest_compared(images: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for name in ("image.efi", "image.disk"):
        (other / name).write_bytes((images["base"] / name).read_bytes())
    data = json.loads((images["base"] / "measurements.json").read_text())
    data["firmware_store_path"] = "/tdx/store/00000000000000000000000000000000-ovmf-other"
    data["measurements"]["MRTD"] = "11" * 48
    (other / "measurements.json").write_text(json.dumps(data))
    d = diff_images(images["base"], other, "base", "other")
    assert d.measurements is not None and d.measurements.firmware is not None
    assert d.measurements.moved == ["MRTD"] and d.measurements.causes() == ["firmware"]
    assert any("different firmware" in n for n in d.notes)


def test_not_an_image_is_one_error(images: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DiffError) as e:
        diff_images(images["base"], tmp_path, "base", str(tmp_path))
    assert e.value.code == "diff-not-image"


def test_with_the_targets_blobs_rtmr0_is_compared(images: dict[str, Path], tmp_path: Path) -> None:
    """Platform blobs (as `tdx measure --blobs` takes them) make RTMR0 predictable: unchanged by a UKI change."""
    import struct

    from tdxstore.diff.image import predicted_manifest
    from tdxstore.measure import load_profile

    blobs = {"acpi-table-loader": b"loader", "acpi-rsdp": b"RSD PTR ", "acpi-tables": b"tables",
             "boot-order": struct.pack("<H", 0), "boot-0000": b"opt0"}
    for name, data in blobs.items():
        (tmp_path / name).write_bytes(data)
    profile = load_profile("qemu-tdx-upstream", tmp_path)
    fw = measure_assets.trixie_ovmf().read_bytes()
    manifests = (predicted_manifest(images["base"], fw, profile), predicted_manifest(images["cmdline"], fw, profile))
    d = diff_images(images["base"], images["cmdline"], "base", "cmdline", manifests=manifests)
    assert d.measurements is not None
    assert d.measurements.registers["RTMR0"] is State.SAME
    assert d.measurements.headline().endswith("leaves MRTD and RTMR0 alone")
