from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import pytest

from tdxstore.cli.app import main
from tdxstore.errors import MeasureError
from tdxstore.measure.event import Register, replay
from tdxstore.measure.gpt import parse_gpt
from tdxstore.measure.predict import predict_firmware, predict_image, require_complete, split_image
from tdxstore.measure.profile import load_profile
from tdxstore.measure.rtmr0 import td_hob
from tdxstore.measure.tdvf import PageAddOrder, parse_tdvf


def full_blobs() -> dict[str, bytes]:
    order = struct.pack("<HH", 0, 1)
    return {
        "acpi-table-loader": b"loader",
        "acpi-rsdp": b"RSD PTR ",
        "acpi-tables": b"tables",
        "boot-order": order,
        "boot-0000": b"opt0",
        "boot-0001": b"opt1",
    }


def test_gpt_event_buffer(disk_path: Path) -> None:
    gpt = parse_gpt(disk_path.read_bytes())
    data = gpt.uefi_gpt_data()
    assert data[:8] == b"EFI PART" and len(data) == 92 + 8 + 128
    assert struct.unpack_from("<Q", data, 92)[0] == 1
    assert gpt.partitions[0].name == "ESP"


def test_split_image_reads_bootx64_from_the_esp(disk_path: Path, uki_path: Path) -> None:
    uki, disk = split_image(disk_path.read_bytes())
    assert uki == uki_path.read_bytes() and disk is not None
    assert split_image(uki_path.read_bytes()) == (uki_path.read_bytes(), None)


def test_prediction_without_blobs_lists_what_is_missing(disk_path: Path, trixie_ovmf: bytes) -> None:
    uki, disk = split_image(disk_path.read_bytes())
    p = predict_image(uki, disk, trixie_ovmf, load_profile("qemu-tdx-upstream"))
    assert p.mrtd is not None and p.rtmrs[Register.RTMR1] and p.rtmrs[Register.RTMR2]
    assert p.rtmrs[Register.RTMR0] is None
    assert "platform blob 'acpi-tables'" in p.missing[Register.RTMR0]
    assert json.loads(json.dumps(p.to_json()))["measurements"]["RTMR0"] is None
    with pytest.raises(MeasureError) as e:
        require_complete(p)
    assert e.value.code == "measure-missing-inputs"
    assert e.value.detail and "acpi-table-loader" in e.value.detail


def test_rtmr0_with_all_blobs(disk_path: Path, trixie_ovmf: bytes) -> None:
    uki, disk = split_image(disk_path.read_bytes())
    profile = dataclasses.replace(load_profile("qemu-tdx-upstream"), blobs=full_blobs())
    p = predict_image(uki, disk, trixie_ovmf, profile)
    require_complete(p)
    rtmr0 = [e.description for e in p.events if e.register is Register.RTMR0]
    assert rtmr0[:3] == ["TD HOB", "firmware configuration volume (CFV)", "variable SecureBoot (empty)"]
    assert rtmr0[-3:] == ["variable BootOrder", "variable Boot0000", "variable Boot0001"]
    assert p.rtmrs[Register.RTMR0] == replay(p.events)[Register.RTMR0]


def test_boot_option_blobs_follow_boot_order() -> None:
    blobs = full_blobs()
    del blobs["boot-0001"]
    profile = dataclasses.replace(load_profile("qemu-tdx-upstream"), blobs=blobs)
    assert profile.missing_blobs() == ["boot-0001"]


def test_unknown_firmware_layout_is_an_error(disk_path: Path, trixie_ovmf: bytes) -> None:
    uki, disk = split_image(disk_path.read_bytes())
    fw = bytearray(trixie_ovmf)
    fw[0x100000] ^= 1  # inside the BFV: a different build
    profile = dataclasses.replace(load_profile("qemu-tdx-upstream"), blobs=full_blobs())
    with pytest.raises(MeasureError) as e:
        predict_image(uki, disk, bytes(fw), profile)
    assert e.value.code == "measure-firmware-unknown"


def test_td_hob_covers_ram(trixie_ovmf: bytes) -> None:
    for mib in (512, 2048, 4096):
        hob = td_hob(parse_tdvf(trixie_ovmf), mib << 20)
        assert struct.unpack_from("<HH", hob) == (1, 56)
        ranges = [struct.unpack_from("<QQ", hob, off + 32) for off in range(56, len(hob), 48)]
        total = sum(length for _start, length in ranges)
        assert total == mib << 20
        starts = [s for s, _ in ranges]
        assert starts == sorted(starts)


def test_profiles() -> None:
    assert load_profile("qemu-tdx-8x").page_add_order.value == "two-pass"
    with pytest.raises(MeasureError) as e:
        load_profile("no-such-vmm")
    assert e.value.code == "measure-unknown-profile"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["measure", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_json(disk_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fw = "/usr/share/ovmf/OVMF.fd"
    rc, out, _ = run_cli([str(disk_path), "--firmware", fw, "--json", "--events", "--partial"], capsys)
    assert rc == 0
    doc = json.loads(out)
    assert doc["measurements"]["MRTD"] and doc["measurements"]["RTMR0"] is None
    assert any(
        e["description"] == "GPT table (disk 0b4e1f2a-7c55-4d2e-9a51-1e6a63f0c0de, 1 partitions)"
        for e in doc["events"]
    )


def test_cli_missing_inputs_fail(disk_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli([str(disk_path), "--firmware", "/usr/share/ovmf/OVMF.fd"], capsys)
    assert rc != 0 and "RTMR1" in out
    assert "error: cannot predict RTMR0" in err and "acpi-table-loader" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{uki}", "--firmware", "/usr/share/OVMF/OVMF_CODE_4M.fd"], "no TDVF metadata"),
        (["/usr/share/OVMF/OVMF_CODE_4M.fd"], "not a UKI"),
        (["{uki}", "--compare", "{uki}"], "Spec ID Event03"),
        (["{uki}", "--platform", "nope"], "unknown platform profile"),
    ],
)
def test_cli_bad_input(
    args: list[str], message: str, uki_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _out, err = run_cli([a.format(uki=uki_path) for a in args] + ["--partial"], capsys)
    assert rc != 0
    assert message in err and "hint:" in err


def test_firmware_alone_gives_mrtd_and_rtmr0_as_with_an_image(disk_path: Path, trixie_ovmf: bytes) -> None:
    profile = dataclasses.replace(load_profile("qemu-tdx-upstream"), blobs=full_blobs())
    alone = predict_firmware(trixie_ovmf, profile)
    with_image = predict_image(*split_image(disk_path.read_bytes()), trixie_ovmf, profile)
    assert alone.mrtd == with_image.mrtd and alone.mrtd is not None
    assert alone.rtmrs[Register.RTMR0] == with_image.rtmrs[Register.RTMR0] is not None
    assert alone.rtmrs[Register.RTMR1] is None and alone.rtmrs[Register.RTMR2] is None
    assert alone.missing[Register.RTMR1] == alone.missing[Register.RTMR2] == ("an image (UKI and disk): pass IMAGE",)
    assert alone.missing[Register.RTMR0] == ()


def test_cli_firmware_alone_prints_mrtd(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.unit.measure.test_tdvf import GOLDEN

    rc, out, err = run_cli(["--firmware", "/usr/share/ovmf/OVMF.fd"], capsys)
    assert rc == 0, err
    assert f"MRTD      {GOLDEN[('bookworm', PageAddOrder.SINGLE_PASS)]}" in out
    assert out.count("missing: an image (UKI and disk): pass IMAGE") == 2  # RTMR1 and RTMR2
    assert "boot " not in out
    rc, out, _ = run_cli(["--firmware", "/usr/share/ovmf/OVMF.fd", "--json", "--page-add-order", "two-pass"],
                         capsys)
    doc = json.loads(out)
    assert rc == 0 and doc["measurements"] == {"MRTD": GOLDEN[("bookworm", PageAddOrder.TWO_PASS)],
                                               "RTMR0": None, "RTMR1": None, "RTMR2": None}
    assert set(doc["missing"]) == {"RTMR0", "RTMR1", "RTMR2"} and "events" not in doc


@pytest.mark.parametrize(("args", "message"), [
    ([], "needs IMAGE, or --firmware FW"),
    (["--firmware", "/usr/share/ovmf/OVMF.fd", "--compare", "/usr/share/ovmf/OVMF.fd"], "--compare needs IMAGE"),
])
def test_cli_without_image_refuses_what_needs_one(args: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(args, capsys)
    assert rc == 2 and out == "" and message in err and err.count("error:") == 1
