"""RTMR2 (PCR 8–15) events of a UKI boot: systemd-stub's section events, then the Linux EFI stub's events.

Pure functions over a parsed `Uki`. Must not guess: a stub older than 256 (TPM-only measurements) or one
whose version cannot be read is an error. Invariants follow systemd 257 `src/boot/stub.c`: sections in
the canonical order (`src/fundamental/uki.c`), two EV_IPL events each (name with NUL, memory image); the
kernel then measures its LoadOptions (sd-stub's mangled .cmdline, UTF-16LE + NUL) and the initrd it is served.
"""

from __future__ import annotations

import re

from tdxstore.errors import MeasureError
from tdxstore.measure.event import Event, Register, sha384
from tdxstore.measure.uki import Uki

# systemd-stub's canonical section order (systemd 257 `unified_sections[]`); .pcrsig is never measured.
CANONICAL_SECTIONS = (
    ".linux",
    ".osrel",
    ".cmdline",
    ".initrd",
    ".ucode",
    ".splash",
    ".dtb",
    ".uname",
    ".sbat",
    ".pcrsig",
    ".pcrpkey",
    ".profile",
    ".dtbauto",
    ".hwids",
)
MIN_CC_STUB = 256  # NEWS for 256: systemd-stub measures through EFI_CC_MEASUREMENT_PROTOCOL
MIN_OSREL_CPIO_STUB = 257  # 257 hands .osrel to the initrd as .extra/os-release

# Parts the stub generates as cpio archives under .extra/ (section -> file name), in hand-over order.
_CPIO_PARTS = (
    (".pcrsig", "tpm2-pcr-signature.json"),
    (".pcrpkey", "tpm2-pcr-public-key.pem"),
    (".osrel", "os-release"),
    (".profile", "profile"),
)


def check_stub(uki: Uki) -> int:
    """The stub's major version; MeasureError when it is unknown or too old to measure into RTMR2."""
    major = uki.stub_major
    if major is None:
        raise MeasureError(
            "cannot tell which systemd-stub this UKI carries (no readable .sdmagic section)",
            hint="Build the UKI with systemd-stub ≥ 256 (ukify or mkosi).",
            code="measure-stub-unknown",
        )
    if major < MIN_CC_STUB:
        raise MeasureError(
            f"systemd-stub {uki.stub_version} measures only into a TPM, not into RTMR2",
            hint=f"Rebuild the UKI with systemd-stub ≥ {MIN_CC_STUB}.",
            code="measure-stub-too-old",
        )
    return major


def section_events(uki: Uki) -> list[Event]:
    """systemd-stub's measure_sections(): two EV_IPL events per present section in canonical order."""
    events = []
    for name in CANONICAL_SECTIONS:
        if name == ".pcrsig" or name not in uki.sections:
            continue
        events.append(
            Event(Register.RTMR2, "EV_IPL", f"UKI section name {name}", sha384(name.encode("ascii") + b"\0"))
        )
        events.append(Event(Register.RTMR2, "EV_IPL", f"UKI section {name}", sha384(uki.sections[name])))
    return events


def mangle_cmdline(raw: bytes) -> str:
    """The command line as systemd-stub hands it to the kernel (mangle_stub_cmdline on the .cmdline text)."""
    text = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    text = "".join(c for c in text if ord(c) <= 0xFFFF)  # xstrn8_to_16 drops non-BMP characters
    text = "".join(" " if (ord(c) <= 0x20 or ord(c) == 0x7F) else c for c in text)
    return text.strip(" ")


def load_options(cmdline: str) -> bytes:
    """The LoadOptions buffer the kernel measures: UTF-16LE command line plus a NUL char."""
    return cmdline.encode("utf-16-le") + b"\0\0"


def _cpio_word(value: int) -> bytes:
    return b"%08x" % value


def _pad4(buf: bytearray) -> None:
    buf.extend(bytes(-len(buf) % 4))


def _cpio_entry(buf: bytearray, ino: int, mode: int, name: str, content: bytes) -> None:
    buf += b"070701"
    for word in (ino, mode, 0, 0, 1, 0, len(content), 0, 0, 0, 0, len(name) + 1, 0):
        buf += _cpio_word(word)
    buf += name.encode("ascii") + b"\0"
    _pad4(buf)
    buf += content
    _pad4(buf)


def literal_cpio(directory: str, filename: str, content: bytes) -> bytes:
    """A newc cpio archive as systemd-stub's pack_cpio_literal() builds it: 0555 dir, 0444 file, trailer."""
    buf = bytearray()
    _cpio_entry(buf, 1, 0o040555, directory, b"")
    _cpio_entry(buf, 2, 0o100444, f"{directory}/{filename}", content)
    buf += b"070701" + b"00000000" * 4 + b"00000001" + b"00000000" * 6 + b"0000000B" + b"00000000"
    buf += b"TRAILER!!!" + bytes(4)
    return bytes(buf)


def initrd_parts(uki: Uki, stub_major: int) -> list[tuple[str, bytes]]:
    """The initrd pieces the stub serves, in order, for a boot without credentials, sysexts or addons."""
    parts = []
    for name in (".ucode", ".initrd"):
        if name in uki.sections:
            parts.append((f"UKI section {name}", uki.sections[name]))
    for name, filename in _CPIO_PARTS:
        if name not in uki.sections or (name == ".osrel" and stub_major < MIN_OSREL_CPIO_STUB):
            continue
        parts.append(
            (f"generated cpio .extra/{filename}", literal_cpio(".extra", filename, uki.sections[name]))
        )
    return parts


def combine_initrd(parts: list[bytes]) -> bytes:
    """combine_initrds(): one part is passed as is; several are each zero-padded to 4 and concatenated."""
    if len(parts) == 1:
        return parts[0]
    return b"".join(p + bytes(-len(p) % 4) for p in parts)


#: Linux's EFI stub measures into the CC protocol (TDX RTMRs) when no TCG2 protocol is present only
#: since the efi/libstub CC-measurement fallback (Linux 6.9); older kernels measure into a TPM only.
MIN_CC_KERNEL = (6, 9)


def check_kernel(uki: Uki) -> None:
    """MeasureError unless the UKI's kernel (`.uname`) is known to measure into RTMR2."""
    release = uki.kernel_release
    m = re.match(r"(\d+)\.(\d+)", release or "")
    if m is None:
        return  # no .uname: the stub-part events stand alone; the kernel events are still the 6.9+ ones
    if (int(m.group(1)), int(m.group(2))) < MIN_CC_KERNEL:
        raise MeasureError(
            f"kernel {release} does not measure its command line and initrd into RTMR2 (needs Linux "
            f"≥ {MIN_CC_KERNEL[0]}.{MIN_CC_KERNEL[1]})",
            hint="Install a newer kernel, e.g. linux-image-cloud-amd64/bookworm-backports (6.12).",
            code="measure-kernel-too-old",
        )


def kernel_events(uki: Uki, stub_major: int) -> list[Event]:
    """The Linux EFI stub's two EV_EVENT_TAG events: LoadOptions and the initrd."""
    check_kernel(uki)
    events = []
    cmdline = mangle_cmdline(uki.sections.get(".cmdline", b""))
    if cmdline:
        events.append(
            Event(
                Register.RTMR2,
                "EV_EVENT_TAG",
                f"kernel command line {cmdline!r}",
                sha384(load_options(cmdline)),
            )
        )
    parts = initrd_parts(uki, stub_major)
    if parts:
        what = " + ".join(name for name, _ in parts)
        events.append(
            Event(
                Register.RTMR2,
                "EV_EVENT_TAG",
                f"initrd ({what})",
                sha384(combine_initrd([p for _, p in parts])),
            )
        )
    return events


def rtmr2_events(uki: Uki) -> list[Event]:
    """Every RTMR2 event of booting `uki` (stub sections, then kernel command line and initrd)."""
    major = check_stub(uki)
    return section_events(uki) + kernel_events(uki, major)
