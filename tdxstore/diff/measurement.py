"""Which measurements a change moves: two measurement manifests (`measurements.json`) compared register by
register, each differing event named with its cause inside the image (command line, initrd, kernel, stub…).

Pure over the manifests' JSON; never predicts anything itself (the manifests were computed at build time
from the images' own bytes). A register missing on either side is "not predicted", never "unchanged".
Images measured with different firmware are compared all the same, and the firmware change is named.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import StrEnum

from tdxstore.errors import DiffError

REGISTERS = ("MRTD", "RTMR0", "RTMR1", "RTMR2")
UKI_FILE = "UKI file (stub and every section)"
# Event description prefix (measure/rtmr1.py, rtmr2.py) -> the cause a reviewer understands.
_CAUSES = (
    ("kernel command line", "kernel command line"),
    ("UKI section .cmdline", "kernel command line"),
    ("UKI section name .cmdline", "kernel command line"),
    ("initrd (", "initrd content"),
    ("UKI section .initrd", "initrd content"),
    ("UKI section .linux", "kernel"),
    ("kernel Authenticode", "kernel"),
    ("UKI section .osrel", "os-release"),
    ("UKI section .uname", "kernel release"),
    ("UKI section .sbat", "stub (SBAT)"),
    ("UKI Authenticode", "UKI file (stub and every section)"),  # UKI_FILE
    ("GPT table", "disk partition table"),
)


class State(StrEnum):
    SAME = "unchanged"
    MOVED = "moved"
    UNKNOWN = "not predicted"


def cause(register: str, description: str) -> str:
    """The part of the image an event measures, as a reviewer names it."""
    if register == "MRTD":
        return "firmware"
    for prefix, what in _CAUSES:
        if description.startswith(prefix):
            return what
    if description.startswith("UKI section"):
        return description.removeprefix("UKI section name ").removeprefix("UKI section ")
    return "firmware or platform configuration" if register == "RTMR0" else description


@dataclass(frozen=True, slots=True)
class EventChange:
    """One event that differs: present in a, in b or both (None where absent)."""

    register: str
    a: str | None
    b: str | None
    cause: str

    def to_json(self) -> dict[str, object]:
        return {"register": self.register, "a": self.a, "b": self.b, "cause": self.cause}


@dataclass(frozen=True, slots=True)
class MeasurementChange:
    """Register states and differing events between two images' manifests."""

    registers: dict[str, State]
    events: tuple[EventChange, ...]
    firmware: tuple[str, str] | None  # (a, b) when the images were measured with different firmware

    def __post_init__(self) -> None:
        if set(self.registers) != set(REGISTERS):
            raise DiffError(f"registers must be {REGISTERS}, got {sorted(self.registers)}", code="internal-error")

    @property
    def moved(self) -> list[str]:
        return [r for r in REGISTERS if self.registers[r] is State.MOVED]

    def causes(self) -> list[str]:
        """Causes, the most specific first: RTMR2's (inside the UKI), then RTMR1's, MRTD's, RTMR0's."""
        order = ("RTMR2", "RTMR1", "MRTD", "RTMR0")
        found = list(dict.fromkeys(e.cause for r in order for e in self.events if e.register == r))
        if len(found) > 1 and UKI_FILE in found:  # the UKI's hash moves with any of its parts named before
            found.remove(UKI_FILE)
        return found

    def headline(self) -> str:
        """e.g. "kernel command line changed: moves RTMR1, RTMR2; leaves MRTD alone; RTMR0 not predicted"."""
        same = [r for r in REGISTERS if self.registers[r] is State.SAME]
        unknown = [r for r in REGISTERS if self.registers[r] is State.UNKNOWN]
        parts = [f"moves {', '.join(self.moved)}" if self.moved else "moves no measurement"]
        if same:
            parts.append(f"leaves {' and '.join(same) if len(same) <= 2 else ', '.join(same)} alone")
        if unknown:
            parts.append(f"{', '.join(unknown)} not predicted")
        what = " and ".join(self.causes()[:3]) + " changed: " if self.events else ""
        return what + "; ".join(parts)

    def describe(self) -> list[str]:
        lines = [self.headline()]
        if self.firmware:
            lines.append(f"firmware differs: {self.firmware[0]} -> {self.firmware[1]} (MRTD and RTMR0 follow it)")
        for r in REGISTERS:
            lines.append(f"  {r:<6} {self.registers[r].value}")
            for e in (e for e in self.events if e.register == r):
                if e.a is not None and e.b is not None:
                    lines.append(f"         {e.cause}: " + (f"{e.a} (digest differs)" if e.a == e.b else
                                                            f"{e.a} -> {e.b}"))
                elif e.a is None and e.b is None:
                    lines.append(f"         {e.cause}")
                else:
                    lines.append(f"         {e.cause}: {e.a or e.b} {'added' if e.a is None else 'removed'}")
        return lines

    def to_json(self) -> dict[str, object]:
        return {"registers": {r: s.value for r, s in self.registers.items()}, "moved": self.moved,
                "causes": self.causes(), "headline": self.headline(),
                "firmware": list(self.firmware) if self.firmware else None,
                "events": [e.to_json() for e in self.events]}


def _values(manifest: dict[str, object]) -> tuple[dict[str, str | None], list[dict[str, str]]]:
    values, events = manifest.get("measurements"), manifest.get("events")
    if not isinstance(values, dict) or not isinstance(events, list):
        raise DiffError("not a measurement manifest: no 'measurements' and 'events'",
                        hint="pass the measurements.json of a built UKI image", code="diff-not-manifest")
    return values, events


def _event_changes(register: str, ea: list[dict[str, str]], eb: list[dict[str, str]]) -> list[EventChange]:
    """Differing events of one register, aligned on their descriptions, then compared by digest."""
    ka = [e["description"].split(" '")[0] for e in ea]  # a changed command line keeps its event's place
    kb = [e["description"].split(" '")[0] for e in eb]
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ka, kb, autojunk=False).get_opcodes():
        if op == "equal":
            out += [EventChange(register, x["description"], y["description"], cause(register, x["description"]))
                    for x, y in zip(ea[i1:i2], eb[j1:j2], strict=True) if x["digest"] != y["digest"]]
            continue
        out += [EventChange(register, x["description"], None, cause(register, x["description"])) for x in ea[i1:i2]]
        out += [EventChange(register, None, y["description"], cause(register, y["description"])) for y in eb[j1:j2]]
    return out


def compare_manifests(a: dict[str, object], b: dict[str, object]) -> MeasurementChange:
    """The measurement change from image a to image b."""
    (va, ea), (vb, eb) = _values(a), _values(b)
    registers: dict[str, State] = {}
    events: list[EventChange] = []
    for r in REGISTERS:
        x, y = va.get(r), vb.get(r)
        registers[r] = State.UNKNOWN if x is None or y is None else State.SAME if x == y else State.MOVED
        if registers[r] is State.MOVED and r == "MRTD":
            events.append(EventChange(r, None, None, "firmware"))
        elif registers[r] is not State.SAME:
            events += _event_changes(r, [e for e in ea if e.get("register") == r],
                                     [e for e in eb if e.get("register") == r])
    fa, fb = (str(m.get("firmware_store_path") or m.get("firmware")) for m in (a, b))
    return MeasurementChange(registers, tuple(events), (fa, fb) if fa != fb else None)
