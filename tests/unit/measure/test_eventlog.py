from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tdxstore.errors import MeasureError
from tdxstore.measure.event import EVENT_TYPES, Event, Register, sha384
from tdxstore.measure.eventlog import LogKind, compare, parse_event_log
from tdxstore.measure.predict import Prediction, predict_image
from tdxstore.measure.profile import load_profile
from tdxstore.measure.rtmr0 import SECURE_BOOT_VARIABLES, variable_data

REAL_LOG = Path(__file__).parents[2] / "data/measure/ovmf-trixie-swtpm-uki.tcg2log"
_TYPE_VALUES = {v: k for k, v in EVENT_TYPES.items()}
_MR_INDEX = {Register.RTMR0: 1, Register.RTMR1: 2, Register.RTMR2: 3}


def encode_ccel(events: Sequence[Event]) -> bytes:
    """A TCG2 crypto-agile log as TDX firmware writes it into CCEL (SHA-384 only), plus 0xff padding."""
    spec = b"Spec ID Event03\0" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, 1)
    spec += struct.pack("<HH", 0xC, 48) + b"\0"
    log = bytearray(struct.pack("<II", 0, 3) + bytes(20) + struct.pack("<I", len(spec)) + spec)
    for ev in events:
        data = ev.description.encode()
        log += struct.pack("<IIIH", _MR_INDEX[ev.register], _TYPE_VALUES[ev.type], 1, 0xC) + ev.digest
        log += struct.pack("<I", len(data)) + data
    return bytes(log) + b"\xff" * 256


def test_real_tpm_log_is_mapped_to_rtmrs() -> None:
    events = parse_event_log(REAL_LOG.read_bytes())
    by_reg = {
        r: [e for e in events if e.register is r] for r in (Register.RTMR0, Register.RTMR1, Register.RTMR2)
    }
    assert [len(v) for v in by_reg.values()] == [14, 7, 14]
    assert sum(e.type == "EV_SEPARATOR" for e in by_reg[Register.RTMR1]) == 1  # one per RTMR, as TDX
    # The empty Secure Boot variables logged by the real OVMF equal what rtmr0 predicts.
    logged = [e.digest for e in by_reg[Register.RTMR0] if e.type == "EV_EFI_VARIABLE_DRIVER_CONFIG"]
    assert logged == [sha384(variable_data(g, n, b"")) for g, n in SECURE_BOOT_VARIABLES]


def test_kind_override() -> None:
    events = parse_event_log(REAL_LOG.read_bytes(), LogKind.CCEL)
    assert {e.register for e in events} <= {Register.RTMR0, Register.RTMR1, Register.RTMR2, Register.RTMR3}


@pytest.fixture(scope="module")
def prediction(uki_path: Path, disk_path: Path) -> Prediction:
    return predict_image(
        uki_path.read_bytes(), disk_path.read_bytes(), None, load_profile("qemu-tdx-upstream")
    )


def test_ccel_round_trip_matches(prediction: Prediction) -> None:
    log = parse_event_log(encode_ccel(prediction.events))
    assert compare(prediction.events, log, [Register.RTMR1, Register.RTMR2]) == []


def patched(uki: bytes, name: str, change: bytes) -> bytes:
    from tdxstore.measure.uki import parse_uki

    sec = next(s for s in parse_uki(uki).layout.sections if s.name == name)
    return uki[: sec.raw_offset] + change + uki[sec.raw_offset + len(change) :]


def test_changed_cmdline_names_the_cmdline_event(
    prediction: Prediction, uki_path: Path, disk_path: Path
) -> None:
    log = parse_event_log(encode_ccel(prediction.events))
    uki = patched(uki_path.read_bytes(), ".cmdline", b"CONSOLE")
    other = predict_image(uki, disk_path.read_bytes(), None, load_profile("qemu-tdx-upstream"))
    diffs = {d.register: d for d in compare(other.events, log, [Register.RTMR1, Register.RTMR2])}
    assert diffs[Register.RTMR2].predicted is not None
    assert diffs[Register.RTMR2].predicted.description == "UKI section .cmdline"
    assert "UKI section .cmdline" in diffs[Register.RTMR2].describe()
    assert diffs[Register.RTMR1].predicted is not None
    assert diffs[Register.RTMR1].predicted.description == "UKI Authenticode"


def test_changed_initrd_byte_names_the_initrd_event(
    prediction: Prediction, uki_path: Path, disk_path: Path
) -> None:
    log = parse_event_log(encode_ccel(prediction.events))
    uki = patched(uki_path.read_bytes(), ".initrd", b"T")
    other = predict_image(uki, disk_path.read_bytes(), None, load_profile("qemu-tdx-upstream"))
    (diff,) = compare(other.events, log, [Register.RTMR2])
    assert diff.predicted is not None and diff.predicted.description == "UKI section .initrd"


def test_extra_logged_event_is_reported(prediction: Prediction) -> None:
    extra = Event(Register.RTMR2, "EV_IPL", "addon", sha384(b"addon"))
    log = parse_event_log(encode_ccel([*prediction.events, extra]))
    (diff,) = compare(prediction.events, log, [Register.RTMR2])
    assert diff.predicted is None and diff.logged is not None
    assert "unexpected logged EV_IPL" in diff.describe()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:100],  # truncated in the header event
        lambda b: b[: len(b) // 2],  # truncated mid-record
        lambda b: b"\0" * 64,  # no Spec ID header
        lambda b: b[:32] + b"\0" * 16 + b[48:],  # header signature destroyed
        lambda b: b"",
    ],
)
def test_bad_logs(mangle: Callable[[bytes], bytes]) -> None:
    real = REAL_LOG.read_bytes()
    with pytest.raises(MeasureError) as e:
        parse_event_log(mangle(real))
    assert e.value.code == "measure-bad-eventlog"
