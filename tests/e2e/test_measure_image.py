"""End to end: the example image, built by `tdx build` with a service that prints the firmware event log,
boots from its own `image.disk` under QEMU (TCG, -cpu qemu64) with the pinned OVMF and swtpm (SHA-384 bank).
Every RTMR1 and RTMR2 event digest of the build's prediction must be in the log (PCRs mapped to RTMRs);
`tdx measure --compare` on the built image passes, and names the command-line event after a changed
command line. Uses $TDX_HOME's store (mkosi caches make a rebuild take minutes, not tens of minutes).
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.cli.app import main
from tdxstore.disk.gpt import make_disk
from tdxstore.disk.manifest import DISK_FILE, MANIFEST_FILE, UKI_FILE
from tdxstore.image import pipeline
from tdxstore.image.pinned import realise_firmware
from tdxstore.measure.authenticode import parse_pe
from tdxstore.measure.event import Register
from tdxstore.measure.eventlog import compare, parse_event_log
from tdxstore.measure.predict import predict_image
from tdxstore.measure.profile import load_profile
from tdxstore.store.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "minimal"
BEGIN, END = "TDX-EVENTLOG-BEGIN", "TDX-EVENTLOG-END"
DUMP = f"""#!/bin/sh
# Prints the firmware's TCG2 event log base64-encoded between markers on the console.
echo {BEGIN}
base64 -w 76 /sys/kernel/security/tpm0/binary_bios_measurements
echo {END}
"""
ADDITION = f"""

# Added by tests/e2e/test_measure_image.py: print the firmware event log on the console.
image.file("/usr/local/bin/tdx-eventlog", content={DUMP!r}, mode="0755")
image.service(name="tdx-eventlog", exec="/usr/local/bin/tdx-eventlog", description="Print the event log",
              after=["local-fs.target"], extra_unit={{"Service": {{"StandardOutput": "journal+console"}}}})
"""
# QEMU 7.2's TCG corrupts EFLAGS around cmpxchg16b (seen here: double faults right after SLUB's
# this_cpu_cmpxchg16b in 6.12, with both Debian OVMF builds, when booting from the disk); without CX16
# the kernel takes the locked fallback and boots.
CPU = "qemu64,-cx16"
LINE = re.compile(r"tdx-eventlog\[\d+\]: (.*)$")
TOOLS = ("qemu-system-x86_64", "swtpm", "swtpm_setup", "mkfs.fat", "mcopy", "sfdisk")


@pytest.fixture(scope="module")
def swtpm_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tpm = tmp_path_factory.mktemp("tpm")
    subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str(tpm), "--pcr-banks", "sha384"],
                   check=True, capture_output=True)
    sock = tpm / "sock"
    proc = subprocess.Popen(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={tpm}", "--terminate",
                             "--ctrl", f"type=unixio,path={sock}"])
    for _ in range(100):
        if sock.exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    yield sock
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def boot_for_log(disk: Path, firmware: Path, sock: Path, work: Path, timeout: float = 900) -> bytes:
    """Boot `disk` with a writable copy of `firmware`; the event log the guest prints on ttyS0."""
    fw = work / "OVMF.fd"
    shutil.copyfile(firmware, fw)
    fw.chmod(0o644)
    argv = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", CPU, "-smp", "1",
            "-m", "2048", "-nodefaults", "-no-reboot", "-display", "none", "-nic", "none",
            "-serial", "stdio", "-monitor", "none", "-drive", f"if=pflash,format=raw,file={fw}",
            "-chardev", f"socket,id=chrtpm,path={sock}", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
            "-device", "tpm-tis,tpmdev=tpm0", "-drive", f"file={disk},format=raw,if=virtio,readonly=on"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    data, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and END.encode() not in data and b"end Kernel panic" not in data:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                data += chunk
    finally:
        proc.kill()
        proc.wait()
    (work / "console.log").write_bytes(data)
    text = data.decode("latin-1").replace("\r", "")
    assert END in text, f"no event log on the console; tail:\n{text[-3000:]}"
    # journal+console prefixes each line with "tdx-eventlog[PID]: "; kernel messages may come between.
    lines = [m.group(1).strip() for line in text.splitlines() if (m := LINE.search(line))]
    body = lines[lines.index(BEGIN) + 1:lines.index(END)]
    return base64.b64decode("".join(body))


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory, swtpm_socket: Path) -> tuple[Path, bytes, Path]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {missing}")
    work = tmp_path_factory.mktemp("image")
    src = work / "minimal"
    shutil.copytree(EXAMPLE, src)
    with open(src / "TDXfile", "a") as f:
        f.write(ADDITION)
    store = Store.open()
    start = time.monotonic()
    _plan, sp, ran = pipeline.build(store, src, fmt="uki")
    print(f"build: {time.monotonic() - start:.0f} s (mkosi ran: {ran})")
    image = store.real_path(sp)
    _fsp, firmware = realise_firmware(store)
    start = time.monotonic()
    log = boot_for_log(image / DISK_FILE, firmware, swtpm_socket, work)
    print(f"boot to event log: {time.monotonic() - start:.0f} s")
    (work / "event.log").write_bytes(log)
    return image, log, work


def test_every_predicted_rtmr1_and_rtmr2_event_is_in_the_log(booted: tuple[Path, bytes, Path]) -> None:
    image, log, _work = booted
    manifest = json.loads((image / MANIFEST_FILE).read_text())
    logged = parse_event_log(log)
    for reg in ("RTMR1", "RTMR2"):
        predicted = [e["digest"] for e in manifest["events"] if e["register"] == reg]
        seen = {e.digest.hex() for e in logged if e.register.value == reg}
        assert predicted and set(predicted) <= seen, reg
    prediction = predict_image((image / UKI_FILE).read_bytes(), (image / DISK_FILE).read_bytes(), None,
                               load_profile("qemu-tdx-upstream"))
    assert compare(prediction.events, logged, [Register.RTMR1, Register.RTMR2]) == []
    counts = {r: sum(e.register is r for e in prediction.events) for r in (Register.RTMR1, Register.RTMR2)}
    assert counts[Register.RTMR1] == 7 and counts[Register.RTMR2] >= 12
    print(f"matched events: RTMR1 {counts[Register.RTMR1]}, RTMR2 {counts[Register.RTMR2]}; "
          f"log events: {len(logged)}")


def test_cli_compare_on_the_built_image_passes(
    booted: tuple[Path, bytes, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    image, _log, work = booted
    for arg in (image, work / "minimal", work / "minimal" / "TDXfile"):  # store path; TDXfile (a lookup)
        assert main(["measure", str(arg), "--compare", str(work / "event.log"), "--partial"]) == 0
        assert "event log matches the prediction" in capsys.readouterr().out


def test_cli_compare_names_a_changed_command_line(
    booted: tuple[Path, bytes, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, _log, work = booted
    data = bytearray((image / UKI_FILE).read_bytes())
    sec = next(s for s in parse_pe(bytes(data)).sections if s.name == ".cmdline")
    cmdline = bytes(data[sec.raw_offset:sec.raw_offset + sec.virtual_size])
    assert b"console=ttyS0" in cmdline
    data[sec.raw_offset:sec.raw_offset + sec.virtual_size] = cmdline.replace(b"console=ttyS0", b"console=ttyS1")
    (tmp_path / "other.efi").write_bytes(bytes(data))
    make_disk(tmp_path / "other.efi", tmp_path / "other.disk", tmp_path)
    rc = main(["measure", str(tmp_path / "other.disk"), "--compare", str(work / "event.log"), "--partial"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "(UKI section .cmdline)" in err and "(UKI Authenticode)" in err
