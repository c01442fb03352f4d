"""End to end: boot a UKI from a GPT disk under QEMU (TCG) + OVMF + swtpm (SHA-384 bank) and check that every
predicted RTMR1/RTMR2 event digest is in the firmware's event log, in order (PCRs mapped to RTMRs, one
separator per RTMR as TDX firmware emits). The guest's busybox initrd prints the log base64 on the serial port.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tdxstore.cli.app import main
from tdxstore.measure.authenticode import parse_pe
from tdxstore.measure.event import Register
from tdxstore.measure.eventlog import compare, parse_event_log
from tdxstore.measure.predict import predict_image, split_image
from tdxstore.measure.profile import load_profile
from tests import measure_assets

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CMDLINE = "console=ttyS0 panic=-1"
INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t securityfs none /sys/kernel/security 2>/dev/null
echo TDX-LOG-BEGIN
base64 /sys/kernel/security/tpm0/binary_bios_measurements
echo TDX-LOG-END
poweroff -f
"""
TOOLS = ("qemu-system-x86_64", "swtpm", "swtpm_setup", "cpio", "mkfs.vfat", "mcopy", "sfdisk")


def busybox_initrd(work: Path) -> bytes:
    root = work / "root"
    for d in ("bin", "proc", "sys", "dev"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin/busybox")
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    names = "\n".join(sorted(str(p.relative_to(root)) for p in root.rglob("*"))) + "\n"
    return subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet", "--reproducible"],
        input=names.encode(),
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout


def boot_and_read_log(work: Path, disk: Path, firmware: Path) -> bytes:
    tpm = work / "tpm"
    tpm.mkdir()
    subprocess.run(
        ["swtpm_setup", "--tpm2", "--tpmstate", str(tpm), "--pcr-banks", "sha384"],
        check=True,
        capture_output=True,
    )
    sock = tpm / "sock"
    swtpm = subprocess.Popen(
        [
            "swtpm",
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={tpm}",
            "--terminate",
            "--ctrl",
            f"type=unixio,path={sock}",
        ]
    )
    try:
        for _ in range(100):
            if sock.exists() or swtpm.poll() is not None:
                break
            time.sleep(0.1)
        fw = work / "OVMF.fd"
        shutil.copy(firmware, fw)
        qemu = [
            "qemu-system-x86_64",
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-m",
            "512",
            "-nographic",
            "-no-reboot",
            "-net",
            "none",
            "-drive",
            f"if=pflash,format=raw,file={fw}",
            "-chardev",
            f"socket,id=chrtpm,path={sock}",
            "-tpmdev",
            "emulator,id=tpm0,chardev=chrtpm",
            "-device",
            "tpm-tis,tpmdev=tpm0",
            "-drive",
            f"file={disk},format=raw,if=virtio",
        ]
        serial = subprocess.run(qemu, capture_output=True, timeout=900).stdout
    finally:
        if swtpm.poll() is None:
            swtpm.kill()
        swtpm.wait()
    text = serial.decode("latin-1").replace("\r", "")
    assert "TDX-LOG-BEGIN" in text, text[-2000:]
    b64 = text.split("TDX-LOG-BEGIN\n", 1)[1].split("TDX-LOG-END", 1)[0]
    return base64.b64decode(b64)


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {missing}")
    work = tmp_path_factory.mktemp("boot")
    uki = measure_assets.build_uki(work / "uki.efi", busybox_initrd(work), CMDLINE)
    disk = measure_assets.build_disk(work / "disk.img", uki)
    log = boot_and_read_log(work, disk, measure_assets.trixie_ovmf())
    (work / "event.log").write_bytes(log)
    return uki, disk, log


def test_every_rtmr1_and_rtmr2_event_matches_the_log(booted: tuple[Path, Path, bytes]) -> None:
    uki, disk, log = booted
    uki_bytes, disk_bytes = split_image(disk.read_bytes())
    assert uki_bytes == uki.read_bytes()
    prediction = predict_image(uki_bytes, disk_bytes, None, load_profile("qemu-tdx-upstream"))
    logged = parse_event_log(log)
    assert compare(prediction.events, logged, [Register.RTMR1, Register.RTMR2]) == []
    counts = {r: sum(e.register is r for e in prediction.events) for r in (Register.RTMR1, Register.RTMR2)}
    assert counts[Register.RTMR1] == 7 and counts[Register.RTMR2] >= 12
    print(f"matched events: RTMR1 {counts[Register.RTMR1]}, RTMR2 {counts[Register.RTMR2]}")


def test_cli_compare_matches(
    booted: tuple[Path, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _uki, disk, log = booted
    (tmp_path / "log").write_bytes(log)
    assert main(["measure", str(disk), "--compare", str(tmp_path / "log"), "--partial"]) == 0
    assert "event log matches the prediction" in capsys.readouterr().out


def test_compare_names_the_cmdline_event(
    booted: tuple[Path, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _uki, _disk, log = booted
    initrd = (_uki.parent / "initrd.img").read_bytes()
    other = measure_assets.build_uki(tmp_path / "other.efi", initrd, CMDLINE + " quiet")
    disk = measure_assets.build_disk(tmp_path / "disk.img", other)
    (tmp_path / "log").write_bytes(log)
    rc = main(["measure", str(disk), "--compare", str(tmp_path / "log"), "--partial"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "RTMR2 event 5 (UKI section .cmdline)" in err
    assert "RTMR1 event 3 (UKI Authenticode)" in err


def test_compare_names_the_initrd_event(booted: tuple[Path, Path, bytes]) -> None:
    uki, disk, log = booted
    data = bytearray(uki.read_bytes())
    sec = next(s for s in parse_pe(bytes(data)).sections if s.name == ".initrd")
    data[sec.raw_offset + sec.virtual_size // 2] ^= 0x01
    prediction = predict_image(bytes(data), disk.read_bytes(), None, load_profile("qemu-tdx-upstream"))
    diffs = {d.register: d for d in compare(prediction.events, parse_event_log(log), [Register.RTMR2])}
    assert diffs[Register.RTMR2].predicted is not None
    assert diffs[Register.RTMR2].predicted.description == "UKI section .initrd"
