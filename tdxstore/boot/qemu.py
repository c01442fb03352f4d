"""Boot a UKI under QEMU with OVMF and watch the serial console for an expected marker.

Software emulation (TCG) by default: it works everywhere, including hosts whose KVM faults OVMF.
OVMF's variable store is copied to a scratch dir per boot, never written in place. The QEMU process
is always killed (its whole session) before returning; nothing here prints.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tdxstore.errors import ImageError
from tdxstore.sandbox import process, supervise

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
_TAIL_LINES = 40
# Linux 6.12 oopses in do_sync_core under QEMU 7.2's TCG with `-cpu max`, and now and then double-faults
# right after a cmpxchg16b with `-cpu qemu64` (both seen here): the baseline x86-64 model without CX16
# boots every kernel Debian ships, reliably.
DEFAULT_CPU = "qemu64,-cx16"


def qemu_argv(uki: Path, vars_copy: Path, *, memory_mb: int, accel: str = "tcg", cpu: str = DEFAULT_CPU,
              ovmf_code: Path = OVMF_CODE, extra: Sequence[str] = (), nic: str = "none") -> list[str]:
    """The QEMU command line (pure): q35, OVMF as pflash, the UKI as `-kernel`, serial on stdout."""
    return [
        "qemu-system-x86_64", "-machine", "q35", "-accel", accel, "-cpu", cpu, "-smp", "1",
        "-m", str(memory_mb), "-nodefaults", "-no-reboot", "-display", "none", "-nic", nic,
        "-serial", "stdio", "-monitor", "none",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={os.fspath(ovmf_code)}",
        "-drive", f"if=pflash,format=raw,unit=1,file={os.fspath(vars_copy)}",
        "-kernel", os.fspath(uki), *extra,
    ]


def boot(
    uki: Path,
    *,
    memory_mb: int = 1024,
    timeout: float = 300,
    expect: bytes,
    accel: str = "tcg",
    console_log: Path | None = None,
    extra_args: Sequence[str] = (),
) -> str:
    """Boot `uki` until `expect` appears on the serial console; returns the console text so far.

    Raises ImageError "boot-timeout" if `expect` is not seen within `timeout` seconds and
    "boot-exited" if QEMU stops first; both carry the console tail in their detail.
    """
    if not expect:
        raise ImageError("boot() needs a non-empty expect= marker", code="boot-bad-argument")
    for f in (uki, OVMF_CODE, OVMF_VARS):
        if not f.is_file():
            raise ImageError(f"cannot boot: {f} does not exist",
                             hint="install Debian's ovmf package" if "OVMF" in f.name else None,
                             code="boot-missing-file")
    if process.which("qemu-system-x86_64") is None:
        raise ImageError("cannot boot: qemu-system-x86_64 is not installed",
                         hint="apt-get install qemu-system-x86", code="boot-missing-file")
    with tempfile.TemporaryDirectory(prefix="tdx-qemu-") as tmp:
        vars_copy = Path(tmp) / "OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, vars_copy)
        argv = qemu_argv(uki, vars_copy, memory_mb=memory_mb, accel=accel, extra=extra_args)
        console = _watch(argv, expect, timeout)
    text = console.data.decode("utf-8", "replace")
    if console_log is not None:
        console_log.write_bytes(console.data)
    if not console.found:
        code = "boot-panic" if console.panicked else "boot-exited" if console.exited else "boot-timeout"
        why = ("the guest kernel panicked" if console.panicked else "QEMU exited" if console.exited
               else f"{timeout:.0f} s passed")
        raise ImageError(
            f"{uki.name} did not print {expect.decode(errors='replace')!r} on the serial console: {why}",
            hint="read the console tail; a first-boot prompt needs systemd.firstboot=off",
            detail=f"command: {process.command_line(argv)}\n{process.tail(text, _TAIL_LINES)}",
            code=code,
        )
    return text


class _Console:
    __slots__ = ("data", "exited", "found", "panicked")

    def __init__(self) -> None:
        self.data = b""
        self.found = False
        self.exited = False
        self.panicked = False


def _watch(argv: list[str], expect: bytes, timeout: float) -> _Console:
    """Run QEMU under the supervisor until `expect` is seen, QEMU exits, or the deadline passes."""
    console = _Console()

    def look(chunk: bytes) -> bool:
        console.data += chunk
        if expect in console.data[-(len(chunk) + len(expect)):]:
            console.found = True
        elif b"Kernel panic - not syncing" in console.data[-(len(chunk) + 64):]:
            console.panicked = True  # the guest will never get there: stop now
        return console.found or console.panicked

    result = supervise(argv, env=process.host_env({"LC_ALL": "C"}), cwd=None, log=io.BytesIO(),
                       timeout=timeout, on_output=look)
    console.exited = result.reason is None
    return console
