"""`tdx run` (L5): boot a built UKI (or build a TDXfile's first) under QEMU, the console on the terminal.

Parses, resolves what to boot, calls `boot.vm.run_vm` and writes the serial console to stdout as it
arrives. Ports are forwarded on 127.0.0.1 only. Ctrl-C stops the VM (its whole QEMU session) and exits 130.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)


def _say(text: str) -> None:
    print(f"tdx run: {text}", file=sys.stderr, flush=True)


def _console(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


def resolve_image(target: Path) -> Path | None:
    """The UKI `target` names (a .efi file, or a built image directory or link), or None for a TDXfile."""
    from tdxstore.errors import ImageError

    if target.is_dir():
        if (target / "image.efi").is_file():
            return target / "image.efi"
        if (target / "TDXfile").is_file():
            return None
        if (target / "image.tar").is_file():
            raise ImageError(f"{str(target)!r} is a tar image, which does not boot", code="image-not-bootable",
                             hint="build it with `tdx build --format uki`, or run the TDXfile")
        raise ImageError(f"{str(target)!r} holds neither a built image (image.efi) nor a TDXfile",
                         code="image-not-found", hint="pass a UKI, a built image directory or a TDXfile")
    if not target.is_file():
        raise ImageError(f"no image or TDXfile at {str(target)!r}", code="image-not-found",
                         hint="pass a UKI (`tdx build --format uki` links out/NAME), or a TDXfile")
    with target.open("rb") as f:
        return target if f.read(2) == b"MZ" else None  # a PE image (UKI); anything else is read as a TDXfile


def build_uki(tdxfile: Path, out: Path) -> Path:
    """`tdx build TDXFILE --format uki -o OUT`, the same path: evaluate, realise, link out/NAME (a GC root)."""
    from tdxstore.cli.app import open_store
    from tdxstore.cli.lock import prepare_build
    from tdxstore.image import pipeline
    from tdxstore.store.gc import add_root
    from tdxstore.store.realise import Options

    locked = prepare_build(tdxfile, False)
    store = open_store()
    with store.gc_guard():
        plan, image, ran = pipeline.build(store, tdxfile, fmt="uki", options=Options(), phase=_say,
                                         import_paths=locked)
        for w in plan.warnings:
            _say(f"warning: {w}")
        out.mkdir(parents=True, exist_ok=True)
        link = add_root(store, out / plan.image.name, image)
    _say(("built" if ran else "up to date:") + f" {plan.image.name} (uki) -> {link}")
    return link / "image.efi"


def run_cmd(
    target: Path = typer.Argument(Path("TDXfile"), metavar="[IMAGE|TDXfile]",
                                  help="A UKI, a built image (out/NAME), or a TDXfile to build first."),
    port: list[str] = typer.Option([], "--port", "-p", metavar="HOST:GUEST",
                                   help="Forward 127.0.0.1:HOST to the guest's TCP port GUEST (repeatable)."),
    memory: int = typer.Option(1024, "--memory", "-m", min=128, help="Guest memory in MiB."),
    accel: str = typer.Option("auto", "--accel", help="auto (KVM where /dev/kvm works, else TCG), kvm or tcg."),
    console_log: Path | None = typer.Option(None, "--console-log", help="Also write the serial console here "
                                                                        "(`tdx secrets push --host-key-from`)."),
    out: Path = typer.Option(Path("out"), "--output", "-o", help="Where a TDXfile's image is linked."),
) -> None:
    """Boot a built image (or build a TDXfile first) under QEMU with OVMF; show its serial console."""
    from tdxstore.boot.vm import Accel, PortForward, check_ports, run_vm
    from tdxstore.errors import UsageError

    try:
        mode = Accel(accel)
    except ValueError:
        raise UsageError(f"--accel {accel!r} is not auto, kvm or tcg", code="usage") from None
    forwards = [PortForward.parse(p) for p in port]
    check_ports(forwards)  # before a build, not after it
    uki = resolve_image(target)
    if uki is None:
        uki = build_uki(target, out)
    try:
        done = run_vm(uki, memory_mb=memory, forwards=forwards, accel=mode, console=_console, notice=_say,
                      console_log=console_log)
    except KeyboardInterrupt:
        _say("stopped the VM")
        raise
    _say(f"the VM stopped (QEMU status {done.returncode}, {done.accel.value}, {done.seconds:.0f} s)")
