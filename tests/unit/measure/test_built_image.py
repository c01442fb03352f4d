"""Measured built images: the pinned firmware store path, the deterministic GPT disk of a UKI, the manifest
the build writes, and `tdx measure` on a built image directory, a store path and the default firmware.

The firmware is realised from a local file:// mirror holding the pinned .deb (no network), the UKI is the
test UKI of conftest (trixie kernel and stub, built by ukify).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tdxstore.cli.app import main
from tdxstore.debian.mirror import MIRROR_ENV
from tdxstore.debian.pins import OVMF_DEB
from tdxstore.disk import gpt as diskmod
from tdxstore.disk.manifest import DISK_FILE, MANIFEST_FILE, UKI_FILE, BuiltImage, manifest, write_manifest
from tdxstore.errors import HashMismatchError, ImageError, MeasureError
from tdxstore.image.pinned import firmware_derivation, realise_firmware
from tdxstore.measure.gpt import parse_gpt
from tdxstore.measure.predict import split_image
from tdxstore.measure.tdvf import PageAddOrder, compute_mrtd
from tdxstore.store.store import Store
from tests import measure_assets


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file:// Debian mirror with only the pinned ovmf .deb, selected through $TDX_DEBIAN_MIRROR."""
    measure_assets.package("ovmf")
    deb = next((measure_assets.CACHE / "debs").glob("ovmf_*.deb"))
    pool = tmp_path / "mirror" / OVMF_DEB.pool
    pool.mkdir(parents=True)
    shutil.copy(deb, pool / OVMF_DEB.file)
    monkeypatch.setenv(MIRROR_ENV, f"file://{tmp_path / 'mirror'}")
    return pool / OVMF_DEB.file


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, uki_path: Path) -> Path:
    out = tmp_path_factory.mktemp("image")
    shutil.copy(uki_path, out / UKI_FILE)
    diskmod.make_disk(out / UKI_FILE, out / DISK_FILE, tmp_path_factory.mktemp("work"))
    return out


def test_disk_is_bit_identical_whatever_the_uki_mtime(uki_path: Path, tmp_path: Path) -> None:
    digests = []
    for i, mtime in enumerate((1, 1_700_000_000)):
        work = tmp_path / str(i)
        work.mkdir()
        shutil.copy(uki_path, work / "uki.efi")
        os.utime(work / "uki.efi", (mtime, mtime))
        diskmod.make_disk(work / "uki.efi", work / "disk", work)
        digests.append(hashlib.sha256((work / "disk").read_bytes()).hexdigest())
        assert sorted(p.name for p in work.iterdir()) == ["disk", "uki.efi"]  # no scratch left
    assert digests[0] == digests[1]


def test_disk_holds_the_uki_on_a_fixed_gpt(built: Path, uki_path: Path) -> None:
    data = (built / DISK_FILE).read_bytes()
    uki, disk = split_image(data)
    assert uki == uki_path.read_bytes() and disk == data
    gpt = parse_gpt(data)
    assert len(gpt.partitions) == 1 and gpt.partitions[0].name == "ESP"
    assert gpt.uefi_gpt_data()[56:72].hex() == "7e0a1c5d2b3f694c9e4d7d1f6a2b8c30"  # DISK_GUID, mixed-endian
    assert len(data) == (2 + diskmod.esp_size_mib(uki_path.stat().st_size)) << 20


def test_esp_size_and_script() -> None:
    assert diskmod.esp_size_mib(0) == 64
    assert diskmod.esp_size_mib(100 << 20) == 111
    assert "start=2048, size=131072," in diskmod.sfdisk_script(64)


def test_disk_without_uki_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as e:
        diskmod.make_disk(tmp_path / "missing.efi", tmp_path / "disk", tmp_path)
    assert e.value.code == "disk-no-uki"


def test_firmware_is_a_fixed_output_store_path(mirror: Path, store: Store) -> None:
    drv = firmware_derivation()
    sp, fd = realise_firmware(store)
    assert sp == drv.out and store.is_valid(sp)
    assert hashlib.sha256(fd.read_bytes()).hexdigest() == measure_assets.TRIXIE_OVMF_SHA256
    assert realise_firmware(store) == (sp, fd)  # a lookup the second time


def test_firmware_with_other_bytes_is_refused(mirror: Path, store: Store) -> None:
    mirror.write_bytes(mirror.read_bytes()[:-1] + b"\0")
    with pytest.raises(HashMismatchError) as e:
        realise_firmware(store)
    assert e.value.code == "hash-mismatch"


def test_manifest_has_values_and_lists_rtmr0_as_missing(built: Path, mirror: Path, store: Store) -> None:
    sp, fd = realise_firmware(store)
    write_manifest(built, fd, sp.logical, "ovmf test")
    doc = json.loads((built / MANIFEST_FILE).read_text())
    values = doc["measurements"]
    assert values["MRTD"] == compute_mrtd(fd.read_bytes(), PageAddOrder.SINGLE_PASS).hex()
    assert len(values["RTMR1"]) == 96 and len(values["RTMR2"]) == 96 and values["RTMR0"] is None
    assert "platform blob 'acpi-table-loader'" in doc["missing"]["RTMR0"]
    assert set(doc["missing"]) == {"RTMR0"}
    assert doc["firmware_store_path"] == sp.logical and doc["profile"].startswith("qemu-tdx-upstream")
    assert doc["boot_chain"]["firmware"] == "ovmf test" and doc["boot_chain"]["stub"].startswith("257")
    assert BuiltImage.at(built).disk == built / DISK_FILE


def test_manifest_refuses_firmware_without_tdvf_metadata(built: Path, store: Store) -> None:
    split = Path("/usr/share/OVMF/OVMF_CODE_4M.fd").read_bytes()
    with pytest.raises(MeasureError) as e:
        manifest((built / UKI_FILE).read_bytes(), (built / DISK_FILE).read_bytes(), split,
                 firmware_derivation().out.logical, "split OVMF_CODE")
    assert e.value.code.startswith("measure-")


def measure(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["measure", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_on_a_built_image_and_default_firmware(
    built: Path, mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TDX_HOME", str(tmp_path / "home"))
    rc, out, err = measure([str(built), "--json", "--partial"], capsys)
    assert rc == 0, err
    doc = json.loads(out)
    fd = measure_assets.trixie_ovmf()
    assert doc["measurements"]["MRTD"] == compute_mrtd(fd.read_bytes(), PageAddOrder.SINGLE_PASS).hex()
    assert doc["measurements"]["RTMR1"]  # the disk was found beside the UKI
    store = Store.open(tmp_path / "home")
    sp = firmware_derivation().out
    assert store.is_valid(sp)  # realised on demand
    # The same through the firmware's logical store path and the disk file itself.
    rc, out2, err = measure([str(built / DISK_FILE), "--firmware", sp.logical, "--json", "--partial"], capsys)
    assert rc == 0, err
    assert json.loads(out2)["measurements"] == doc["measurements"]


def test_cli_on_a_store_path_and_result_link(
    built: Path, store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TDX_HOME", str(store.home))
    sp = store.add_path(built, "minimal-uki")
    link = store.home / "result"
    link.symlink_to(store.real_path(sp))
    fw = str(measure_assets.trixie_ovmf())
    results = []
    for arg in (sp.logical, str(link)):
        rc, out, err = measure([arg, "--firmware", fw, "--json", "--partial"], capsys)
        assert rc == 0, err
        results.append(json.loads(out)["measurements"])
    assert results[0] == results[1] and results[0]["RTMR1"]


@pytest.mark.parametrize(("kind", "code"), [("empty-dir", "image-not-bootable"), ("bad-store", "measure-unreadable")])
def test_cli_bad_image_arguments(
    kind: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TDX_HOME", str(tmp_path / "home"))
    arg = str(tmp_path) if kind == "empty-dir" else "/tdx/store/" + "0" * 32 + "-gone"
    rc, _out, err = measure([arg, "--partial"], capsys)
    assert rc != 0 and "hint:" in err
    assert ("not a built bootable image" if kind == "empty-dir" else "not a valid store path") in err
