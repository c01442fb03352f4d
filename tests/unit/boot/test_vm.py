"""`tdx run`'s VM runner: the QEMU command line, port forwards (127.0.0.1 only), and each refusal before boot.

The booted path (console streamed, KVM fault falling back to TCG, Ctrl-C) runs in tests/e2e/test_secrets_boot.py.
"""

from __future__ import annotations

import socket
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
