"""Run a built UKI as a local VM for a user (`tdx run`): OVMF, KVM or TCG, ports forwarded on 127.0.0.1.

The serial console goes to a callback (the CLI writes it to the terminal) and optionally to a log file.
The VM runs until QEMU exits or the caller is interrupted (Ctrl-C): either way QEMU's whole session is
killed and its scratch copy of the OVMF variables removed before this returns. Never prints; never
forwards a port on any address but 127.0.0.1.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from tdxstore.boot.qemu import DEFAULT_CPU, OVMF_CODE, OVMF_VARS, qemu_argv
from tdxstore.errors import ImageError
from tdxstore.sandbox import process, supervise

# Under KVM the host's CPU model; under TCG the model the boot tests found reliable (qemu.DEFAULT_CPU).
KVM_CPU = "host"
# What QEMU prints when KVM cannot run this VM on this host; under `--accel auto` the run is then retried
# under TCG. Each was seen on a machine this project ran on:
#  - nested KVM that cannot emulate OVMF's first instructions from pflash: "KVM internal error. Suberror: 1"
#    ("emulation failure"), and QEMU stops the vCPU;
#  - nested KVM on an AMD EPYC guest that refuses an MSR `-cpu host` sets when the vCPU is created
#    (0x10a, IA32_ARCH_CAPABILITIES): "error: failed to set MSR 0x10a to 0x69", then QEMU aborts on an
#    assertion in its KVM code ("../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion ...").
# The last two are QEMU's own error lines (prefixed with its name), so a guest printing them does not match.
KVM_FAULT = re.compile(rb"KVM internal error|qemu-system-x86_64: (?:error: failed to set MSR|\S*/kvm/kvm\.c:\d+:)")
_KVM_GET_API_VERSION = 0xAE00
_TAIL_LINES = 30

Console = Callable[[bytes], None]
Notice = Callable[[str], None]


class Accel(StrEnum):
    AUTO = "auto"
    KVM = "kvm"
    TCG = "tcg"


@dataclass(frozen=True, slots=True)
class PortForward:
    """A TCP port of the guest reachable at 127.0.0.1:`host` on the host (QEMU user networking)."""

    host: int
    guest: int

    def __post_init__(self) -> None:
        for what, port in (("host", self.host), ("guest", self.guest)):
            if not isinstance(port, int) or not 0 < port < 65536:
                raise ImageError(f"{what} port {port!r} is not a TCP port (1-65535)", code="bad-port",
                                 hint="write --port HOST:GUEST, e.g. --port 2222:22")

    @classmethod
    def parse(cls, text: str) -> PortForward:
        """`HOST:GUEST`, or `PORT` for the same number on both sides."""
        host, sep, guest = text.partition(":")
        if not host.isdigit() or (sep and not guest.isdigit()):
            raise ImageError(f"--port {text!r} is not HOST:GUEST", hint="e.g. --port 2222:22 (TCP, 127.0.0.1 only)",
                             code="bad-port")
        return cls(int(host), int(guest or host))

    @property
    def rule(self) -> str:
        return f"hostfwd=tcp:127.0.0.1:{self.host}-:{self.guest}"


@dataclass(frozen=True, slots=True)
class VmExit:
    """How a VM run ended: the accelerator used, QEMU's status, its run time, whether KVM was abandoned."""

    accel: Accel
    returncode: int
    seconds: float
    kvm_fault: bool = False


def kvm_usable(device: str = "/dev/kvm") -> bool:
    """Whether `device` opens read-write and answers KVM_GET_API_VERSION with the stable API (12)."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, _KVM_GET_API_VERSION) == 12
    except OSError:
        return False
    finally:
        os.close(fd)


def check_ports(forwards: Sequence[PortForward]) -> None:
    """Each host port free on 127.0.0.1 and given once (QEMU would only say 'Could not set up host forwarding')."""
    seen: set[int] = set()
    for fwd in forwards:
        if fwd.host in seen:
            raise ImageError(f"host port {fwd.host} is forwarded twice", code="bad-port")
        seen.add(fwd.host)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", fwd.host))
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
                raise ImageError(f"port 127.0.0.1:{fwd.host} is already in use", code="port-busy",
                                 hint=f"choose another host port: --port OTHER:{fwd.guest}") from None


def nic(forwards: Sequence[PortForward]) -> str:
    """User-mode networking with a virtio NIC; forwarded ports bind 127.0.0.1 only."""
    return ",".join(["user", "model=virtio-net-pci", *(f.rule for f in forwards)])


def vm_argv(uki: Path, vars_copy: Path, *, memory_mb: int, accel: Accel, forwards: Sequence[PortForward],
            ovmf_code: Path = OVMF_CODE) -> list[str]:
    """The QEMU command line of `tdx run` (pure)."""
    if accel is Accel.AUTO:
        raise ValueError("resolve Accel.AUTO before building the command line")
    cpu = KVM_CPU if accel is Accel.KVM else DEFAULT_CPU
    return qemu_argv(uki, vars_copy, memory_mb=memory_mb, accel=accel.value, cpu=cpu, ovmf_code=ovmf_code,
                     nic=nic(forwards))


def check_bootable(uki: Path, ovmf_code: Path = OVMF_CODE, ovmf_vars: Path = OVMF_VARS) -> None:
    if not uki.is_file():
        raise ImageError(f"no bootable image at {str(uki)!r}", code="image-not-found",
                         hint="build one with `tdx build --format uki`, or pass the TDXfile to `tdx run`")
    for f in (ovmf_code, ovmf_vars):
        if not f.is_file():
            raise ImageError(f"cannot boot: the OVMF firmware file {str(f)!r} does not exist", code="no-ovmf",
                             hint="install Debian's ovmf package (apt-get install ovmf)")
    if process.which("qemu-system-x86_64") is None:
        raise ImageError("cannot boot: qemu-system-x86_64 is not installed", code="no-qemu",
                         hint="apt-get install qemu-system-x86")


def kvm_fault(output: bytes) -> str | None:
    """The line of `output` that says KVM cannot run this VM (KVM_FAULT), or None."""
    found = KVM_FAULT.search(output)
    if found is None:
        return None
    start = output.rfind(b"\n", 0, found.start()) + 1
    end = output.find(b"\n", found.end())
    return output[start:None if end < 0 else end].decode("utf-8", "replace").strip()


class _Sink:
    """QEMU's output: to the console callback and the log; notices a KVM fault (then stops the VM)."""

    def __init__(self, console: Console, log: BinaryIO | None, watch_kvm: bool) -> None:
        self.console, self.log, self.watch_kvm = console, log, watch_kvm
        self.kvm_fault: str | None = None
        self.tail = b""

    def __call__(self, chunk: bytes) -> bool:
        self.tail = (self.tail + chunk)[-8192:]
        if self.watch_kvm and self.kvm_fault is None:
            self.kvm_fault = kvm_fault(self.tail)
        if self.kvm_fault is not None:
            return True
        self.console(chunk)
        if self.log is not None:
            self.log.write(chunk)
            self.log.flush()
        return False


def run_vm(uki: Path, *, memory_mb: int = 1024, forwards: Sequence[PortForward] = (),
           accel: Accel = Accel.AUTO, console: Console, notice: Notice | None = None,
           console_log: Path | None = None, timeout: float | None = None) -> VmExit:
    """Boot `uki` and stream its serial console until QEMU exits (or `timeout`, or KeyboardInterrupt).

    `Accel.AUTO` uses KVM when /dev/kvm is usable and falls back to TCG when QEMU says KVM cannot run the VM.
    Raises ImageError `vm-failed` when QEMU itself exits with an error (its message in the detail).
    """
    check_bootable(uki)
    check_ports(forwards)
    say = notice or (lambda _text: None)
    chosen = accel if accel is not Accel.AUTO else (Accel.KVM if kvm_usable() else Accel.TCG)
    fell_back = False
    with tempfile.TemporaryDirectory(prefix="tdx-run-") as tmp, \
            (console_log.open("wb") if console_log is not None else open(os.devnull, "wb")) as log, \
            open(os.devnull, "wb") as discard:
        while True:
            vars_copy = Path(tmp) / "OVMF_VARS.fd"
            shutil.copyfile(OVMF_VARS, vars_copy)
            argv = vm_argv(uki, vars_copy, memory_mb=memory_mb, accel=chosen, forwards=forwards)
            say(f"booting {uki} ({chosen.value}, {memory_mb} MiB"
                + "".join(f", 127.0.0.1:{f.host} -> guest {f.guest}" for f in forwards) + ")")
            sink = _Sink(console, log, watch_kvm=chosen is Accel.KVM)
            start = time.monotonic()
            result = supervise(argv, env=process.host_env({"LC_ALL": "C"}), cwd=None, log=discard,
                               timeout=timeout, on_output=sink)
            if sink.kvm_fault is not None and accel is Accel.AUTO:
                say(f"KVM cannot run this VM on this host (QEMU: {sink.kvm_fault}); booting again under TCG")
                chosen, fell_back = Accel.TCG, True
                continue
            seconds = time.monotonic() - start
            break
    if (result.reason is None and result.returncode != 0) or sink.kvm_fault is not None:
        raise ImageError(f"QEMU stopped with status {result.returncode} before the guest powered off",
                         hint="read QEMU's message below" + ("; try --accel tcg" if sink.kvm_fault else ""),
                         detail=f"command: {result.command}\n{process.tail(sink.tail, _TAIL_LINES)}",
                         code="vm-failed")
    return VmExit(chosen, result.returncode, seconds, kvm_fault=fell_back)
