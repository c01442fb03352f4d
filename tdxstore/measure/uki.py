"""Reading a unified kernel image (UKI): its sections as the stub sees them and the stub's version.

Pure parsing over bytes; it must not decide what is measured (that is rtmr1/rtmr2's job). Invariants: a
`Uki` always has a `.linux` section; section contents are memory images (VirtualSize long); only the first
occurrence of a section name counts, as in systemd-stub; multi-profile UKIs are refused, not guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tdxstore.errors import MeasureError
from tdxstore.measure.authenticode import PeLayout, parse_pe, section_memory

# systemd-stub's `.sdmagic` section: "#### LoaderInfo: systemd-stub 257.13-1~deb13u1 ####".
_SDMAGIC = re.compile(rb"#### LoaderInfo: systemd-stub (\S+) ####")


@dataclass(frozen=True, slots=True)
class Uki:
    """A parsed UKI: the whole file, its PE layout, named section memory images and the stub version."""

    data: bytes = field(repr=False)
    layout: PeLayout = field(repr=False)
    sections: dict[str, bytes] = field(repr=False)
    stub_version: str | None

    @property
    def stub_major(self) -> int | None:
        """The stub's major version (257 for "257.13-1~deb13u1"), or None when no `.sdmagic` names it."""
        if self.stub_version is None:
            return None
        m = re.match(r"(\d+)", self.stub_version)
        return int(m.group(1)) if m else None

    @property
    def os_release(self) -> dict[str, str]:
        """The `.osrel` section as key/value pairs (empty without one)."""
        text = self.sections.get(".osrel", b"").split(b"\0", 1)[0].decode("utf-8", "replace")
        pairs = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.startswith("#"):
                pairs[key.strip()] = value.strip().strip("\"'")
        return pairs

    @property
    def kernel_release(self) -> str | None:
        """The `.uname` section (kernel release), if present."""
        raw = self.sections.get(".uname")
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip() if raw else None


def parse_uki(data: bytes) -> Uki:
    """Parse a UKI; MeasureError(measure-not-uki) when it is not a PE image with a `.linux` section."""
    try:
        layout = parse_pe(data)
    except MeasureError as e:
        raise MeasureError(
            f"not a UKI: {e.message}",
            hint="Pass a unified kernel image (a systemd-stub PE with .linux, .cmdline, .initrd… sections).",
            code="measure-not-uki",
        ) from e
    sections: dict[str, bytes] = {}
    for sec in layout.sections:
        if sec.name == ".profile":
            raise MeasureError(
                "multi-profile UKIs (with .profile sections) are not supported yet",
                hint="Build a single-profile UKI.",
                code="measure-uki-profiles",
            )
        if sec.name not in sections:
            sections[sec.name] = section_memory(data, sec)
    if ".linux" not in sections:
        names = ", ".join(sorted(sections)) or "none"
        raise MeasureError(
            f"not a UKI: the PE image has no .linux section (sections: {names})",
            hint="Pass a unified kernel image built with systemd-stub (ukify or mkosi).",
            code="measure-not-uki",
        )
    m = _SDMAGIC.search(sections.get(".sdmagic", b""))
    version = m.group(1).decode("ascii", "replace") if m else None
    return Uki(data, layout, sections, version)
