"""Parsing firmware event logs (TCG2 crypto-agile, or the TDX CCEL area) into per-RTMR event lists.

Pure functions over bytes. Must not guess silently: a truncated or malformed log is a MeasureError naming the
offset; a log without a SHA-384 digest cannot be compared. Invariants: the TCG_PCR_EVENT header comes first
(TCG PC Client PFP §10.2); TPM logs are mapped PCR→RTMR (UEFI 2.10 §38.4.1) keeping one separator per
RTMR, as TDX firmware emits; EV_NO_ACTION and MRTD (PCR0 / MR index 0) events are dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tdxstore.errors import MeasureError
from tdxstore.measure.event import Event, Register, event_type_name

_SHA384 = 0x000C
_EV_NO_ACTION = 0x3
_EV_SEPARATOR = 0x4


class LogKind(StrEnum):
    TPM = "tpm"  # indices are PCRs (binary_bios_measurements with a vTPM)
    CCEL = "ccel"  # indices are CC MR indices: 1 = RTMR0 … 4 = RTMR3


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One logged event: its register after mapping, original index, type name, SHA-384 digest and data."""

    register: Register
    index: int
    type: str
    digest: bytes
    data: bytes = field(repr=False)


def _bad(message: str) -> MeasureError:
    return MeasureError(
        message,
        hint="Pass the raw log: /sys/firmware/acpi/tables/data/CCEL or "
        "/sys/kernel/security/tpm0/binary_bios_measurements.",
        code="measure-bad-eventlog",
    )


def _take(log: bytes, off: int, n: int, what: str) -> bytes:
    if off + n > len(log):
        raise _bad(f"event log truncated at offset {off:#x} while reading {what}")
    return log[off : off + n]


def _spec_id(log: bytes) -> tuple[dict[int, int], int]:
    """Parse the TCG_PCR_EVENT Spec ID header; returns algorithm sizes and where EVENT2 records start."""
    _pcr, etype = struct.unpack("<II", _take(log, 0, 8, "the header event"))
    (size,) = struct.unpack("<I", _take(log, 28, 4, "the header event size"))
    data = _take(log, 32, size, "the Spec ID event")
    if etype != _EV_NO_ACTION or not data.startswith(b"Spec ID Event03\0"):
        raise _bad("not a TCG2 crypto-agile event log: no 'Spec ID Event03' header event")
    (count,) = struct.unpack_from("<I", data, 24)
    if 28 + 4 * count > len(data):
        raise _bad("the Spec ID event lists more algorithms than it holds")
    algs = {}
    for i in range(count):
        alg, dsize = struct.unpack_from("<HH", data, 28 + 4 * i)
        algs[alg] = dsize
    if _SHA384 not in algs:
        raise _bad("the event log has no SHA-384 bank")
    return algs, 32 + size


def _register(kind: LogKind, index: int) -> Register | None:
    if kind is LogKind.CCEL:
        return {1: Register.RTMR0, 2: Register.RTMR1, 3: Register.RTMR2, 4: Register.RTMR3}.get(index)
    if index in (1, 7):
        return Register.RTMR0
    if 2 <= index <= 6:
        return Register.RTMR1
    if 8 <= index <= 15:
        return Register.RTMR2
    return None


def _records(log: bytes, algs: dict[int, int], off: int) -> list[tuple[int, int, bytes, bytes]]:
    out: list[tuple[int, int, bytes, bytes]] = []
    while off < len(log):
        if not log[off:].strip(b"\xff") or not log[off:].strip(b"\0"):
            break  # unused tail of a pre-allocated log area (CCEL)
        index, etype, count = struct.unpack("<III", _take(log, off, 12, "an event header"))
        off += 12
        digest = None
        for _ in range(count):
            (alg,) = struct.unpack("<H", _take(log, off, 2, "a digest algorithm"))
            if alg not in algs:
                raise _bad(f"event at offset {off:#x} uses algorithm {alg:#x}, absent from the log header")
            d = _take(log, off + 2, algs[alg], "a digest")
            if alg == _SHA384:
                digest = d
            off += 2 + algs[alg]
        (size,) = struct.unpack("<I", _take(log, off, 4, "an event size"))
        data = _take(log, off + 4, size, "event data")
        off += 4 + size
        if digest is None:
            raise _bad(f"event {len(out)} (index {index}) carries no SHA-384 digest")
        out.append((index, etype, digest, data))
    return out


def parse_event_log(log: bytes, kind: LogKind | None = None) -> list[LogEvent]:
    """Every RTMR event of a log, in log order, mapped to registers (kind guessed from indices if None)."""
    algs, off = _spec_id(log)
    records = _records(log, algs, off)
    if kind is None:
        kind = LogKind.TPM if any(r[0] > 4 for r in records) else LogKind.CCEL
    events: list[LogEvent] = []
    seen_separator: set[Register] = set()
    for index, etype, digest, data in records:
        reg = _register(kind, index)
        if reg is None or etype == _EV_NO_ACTION:
            continue
        if kind is LogKind.TPM and etype == _EV_SEPARATOR:
            if reg in seen_separator:
                continue  # TDX firmware extends one separator per RTMR, a TPM one per PCR
            seen_separator.add(reg)
        events.append(LogEvent(reg, index, event_type_name(etype), digest, data))
    return events


@dataclass(frozen=True, slots=True)
class Difference:
    """The first event of a register where prediction and log disagree (either side may have run out)."""

    register: Register
    position: int
    predicted: Event | None
    logged: LogEvent | None

    def describe(self) -> str:
        if self.predicted is not None:
            what = self.predicted.description
        else:
            what = f"unexpected logged {self.logged.type if self.logged else '?'} event"
        pred = self.predicted.digest.hex() if self.predicted else "(none)"
        got = self.logged.digest.hex() if self.logged else "(none)"
        return f"{self.register} event {self.position} ({what}): predicted {pred}, log has {got}"

    def to_json(self) -> dict[str, object]:
        return {
            "register": self.register.value,
            "position": self.position,
            "predicted": self.predicted.to_json() if self.predicted else None,
            "logged": {
                "type": self.logged.type,
                "index": self.logged.index,
                "digest": self.logged.digest.hex(),
            }
            if self.logged
            else None,
        }


def compare(
    predicted: Sequence[Event], logged: Sequence[LogEvent], registers: Sequence[Register]
) -> list[Difference]:
    """For each register in `registers`, the first event that differs between prediction and log."""
    out = []
    for reg in registers:
        pred = [e for e in predicted if e.register is reg]
        log = [e for e in logged if e.register is reg]
        for i in range(max(len(pred), len(log))):
            p = pred[i] if i < len(pred) else None
            g = log[i] if i < len(log) else None
            if p is None or g is None or p.digest != g.digest:
                out.append(Difference(reg, i, p, g))
                break
    return out
