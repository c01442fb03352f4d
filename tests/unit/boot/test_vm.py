"""`tdx run`'s VM runner: the QEMU command line, port forwards (127.0.0.1 only), and each refusal before boot.

The booted path (console streamed, Ctrl-C, and on a host whose KVM cannot run the VM the fall back to TCG)
runs in tests/e2e/test_secrets_boot.py. Here the fall back runs against a stand-in `qemu-system-x86_64` that
prints what the real one printed on two hosts whose nested KVM could not run OVMF: the fault cannot be
caused on demand on a host whose KVM works.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from tdxstore.boot import vm
from tdxstore.boot.qemu import DEFAULT_CPU
from tdxstore.cli.run import resolve_image
from tdxstore.errors import ImageError


@pytest.mark.parametrize(("text", "host", "guest"), [("2222:22", 2222, 22), ("7979", 7979, 7979)])
def test_port_forward_parse(text: str, host: int, guest: int) -> None:
    fwd = vm.PortForward.parse(text)
    assert (fwd.host, fwd.guest) == (host, guest)
    assert fwd.rule == f"hostfwd=tcp:127.0.0.1:{host}-:{guest}"


@pytest.mark.parametrize("text", ["", "a:22", "22:", "0:22", "22:70000", "1:2:3", "-1:22"])
def test_bad_port_forward(text: str) -> None:
    with pytest.raises(ImageError) as e:
        vm.PortForward.parse(text)
    assert e.value.code == "bad-port"


def test_argv_tcg_and_kvm() -> None:
    fwds = [vm.PortForward(2222, 22), vm.PortForward(8080, 80)]
    argv = vm.vm_argv(Path("/i.efi"), Path("/v.fd"), memory_mb=768, accel=vm.Accel.TCG, forwards=fwds)
    assert argv[argv.index("-accel") + 1] == "tcg" and argv[argv.index("-cpu") + 1] == DEFAULT_CPU
    assert argv[argv.index("-nic") + 1] == ("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22,"
                                            "hostfwd=tcp:127.0.0.1:8080-:80")
    assert argv[argv.index("-m") + 1] == "768" and argv[argv.index("-kernel") + 1] == "/i.efi"
    kvm = vm.vm_argv(Path("/i.efi"), Path("/v.fd"), memory_mb=768, accel=vm.Accel.KVM, forwards=())
    assert kvm[kvm.index("-cpu") + 1] == "host" and kvm[kvm.index("-nic") + 1] == "user,model=virtio-net-pci"
    with pytest.raises(ValueError):
        vm.vm_argv(Path("/i.efi"), Path("/v.fd"), memory_mb=768, accel=vm.Accel.AUTO, forwards=())


def test_busy_port_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(ImageError) as e:
            vm.check_ports([vm.PortForward(port, 22)])
        assert e.value.code == "port-busy" and str(port) in e.value.message
    with pytest.raises(ImageError) as e:
        vm.check_ports([vm.PortForward(port, 22), vm.PortForward(port, 80)])
    assert e.value.code == "bad-port"


def test_missing_image_and_firmware(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as e:
        vm.run_vm(tmp_path / "none.efi", console=lambda _c: None)
    assert e.value.code == "image-not-found"
    uki = tmp_path / "image.efi"
    uki.write_bytes(b"MZ")
    with pytest.raises(ImageError) as e:
        vm.check_bootable(uki, ovmf_code=tmp_path / "OVMF_CODE.fd")
    assert e.value.code == "no-ovmf" and "apt-get install ovmf" in (e.value.hint or "")


def test_kvm_probe_on_a_non_kvm_device(tmp_path: Path) -> None:
    assert vm.kvm_usable("/dev/null") is False
    assert vm.kvm_usable(str(tmp_path / "absent")) is False


def test_resolve_image(tmp_path: Path) -> None:
    built = tmp_path / "out" / "demo"
    built.mkdir(parents=True)
    (built / "image.efi").write_bytes(b"MZ\x90\x00")
    assert resolve_image(built) == built / "image.efi"
    assert resolve_image(built / "image.efi") == built / "image.efi"
    project = tmp_path / "project"
    project.mkdir()
    (project / "TDXfile").write_text("from tdx import Image\n")
    assert resolve_image(project) is None and resolve_image(project / "TDXfile") is None
    tar = tmp_path / "tar"
    tar.mkdir()
    (tar / "image.tar").write_bytes(b"")
    with pytest.raises(ImageError) as e:
        resolve_image(tar)
    assert e.value.code == "image-not-bootable"


# What qemu-system-x86_64 printed under `-accel kvm -cpu host`: an AMD EPYC guest with nested KVM (it aborts
# creating the vCPU), and a nested KVM that cannot emulate OVMF's first instructions (the vCPU stops, QEMU stays).
MSR_ABORT = (b"qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n"
             b"qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion "
             b"`ret == cpu->kvm_msr_buf->nmsrs' failed.\n")
EMULATION_FAILURE = (b"KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000001\n"
                     b"emulation failure\nEAX=00000000 EBX=00807000 ECX=00000001 EDX=00807154\n")


@pytest.mark.parametrize(("output", "line"), [
    (MSR_ABORT, "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69"),
    (b"BdsDxe: loading\r\n" + EMULATION_FAILURE, "KVM internal error. Suberror: 1"),
    (b"qemu-system-x86_64: ../target/i386/kvm/kvm.c:12: kvm_arch_init_vcpu: Assertion `r == 0' failed.",
     "qemu-system-x86_64: ../target/i386/kvm/kvm.c:12: kvm_arch_init_vcpu: Assertion `r == 0' failed."),
])
def test_kvm_fault_found(output: bytes, line: str) -> None:
    assert vm.kvm_fault(output) == line


@pytest.mark.parametrize("output", [
    b"",
    b"[    1.20] kvm: failed to set MSR 0x10a\n",  # a guest's own words are not QEMU's
    b"qemu-system-x86_64: -nic user: Could not set up host forwarding rule\n",
    b"Welcome to Debian GNU/Linux 12 (bookworm)!\n",
])
def test_no_kvm_fault(output: bytes) -> None:
    assert vm.kvm_fault(output) is None


def fake_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kvm_output: bytes, kvm_exits: bool) -> tuple[Path, Path]:
    """A `qemu-system-x86_64` put first on PATH: under KVM it prints `kvm_output` (then exits 134 or hangs);
    under TCG it prints a console line and exits 0. Returns the file each run's accelerator is appended
    to, and a UKI for it to be given."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    script = bin_dir / "qemu-system-x86_64"
    script.write_text(f"""#!{sys.executable}
import sys, time
accel = sys.argv[sys.argv.index("-accel") + 1]
with open({str(calls)!r}, "a") as f:
    f.write(accel + "\\n")
if accel == "kvm":
    sys.stderr.buffer.write({kvm_output!r})
    sys.stderr.flush()
    if {kvm_exits!r}:
        sys.exit(134)
    time.sleep(120)
sys.stdout.write("guest: powered off\\n")
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    uki = tmp_path / "image.efi"
    uki.write_bytes(b"MZ")
    return calls, uki


@pytest.mark.parametrize(("output", "exits"), [(MSR_ABORT, True), (EMULATION_FAILURE, False)])
def test_auto_falls_back_to_tcg_when_kvm_cannot_run_the_vm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           output: bytes, exits: bool) -> None:
    calls, uki = fake_qemu(tmp_path, monkeypatch, output, exits)
    monkeypatch.setattr(vm, "kvm_usable", lambda: True)  # the stand-in answers for KVM, whatever this host has
    console: list[bytes] = []
    notices: list[str] = []
    log = tmp_path / "console.log"
    done = vm.run_vm(uki, console=console.append, notice=notices.append, console_log=log, timeout=60)
    assert (done.accel, done.returncode, done.kvm_fault) == (vm.Accel.TCG, 0, True)
    assert calls.read_text().split() == ["kvm", "tcg"]
    fault = vm.kvm_fault(output)
    assert fault is not None and any(fault in n and "booting again under TCG" in n for n in notices), notices
    # the console and its log hold the guest's run, not QEMU's complaint about KVM
    assert b"".join(console) == log.read_bytes() == b"guest: powered off\n"


def test_kvm_asked_for_and_faulting_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls, uki = fake_qemu(tmp_path, monkeypatch, MSR_ABORT, True)
    with pytest.raises(ImageError) as e:
        vm.run_vm(uki, accel=vm.Accel.KVM, console=lambda _c: None, timeout=60)
    assert e.value.code == "vm-failed" and "try --accel tcg" in (e.value.hint or "")
    assert "failed to set MSR 0x10a" in (e.value.detail or "")
    assert calls.read_text().split() == ["kvm"]
