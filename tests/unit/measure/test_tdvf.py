"""MRTD of Debian's unified OVMF.fd builds in both page-add orders.

Golden single-pass values were also reproduced by td-shim's own Python calculator
(td-shim-tools/src/bin/td-shim-tee-info-hash/td_shim_tee_info_hash.py, commit 96109ba) run on the same files;
every value is recomputed here by an independent, deliberately naive implementation (`naive_mrtd`).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from tdxstore.errors import MeasureError
from tdxstore.measure.tdvf import PageAddOrder, SectionType, compute_mrtd, parse_tdvf
from tests import measure_assets

BOOKWORM_OVMF = Path("/usr/share/ovmf/OVMF.fd")
GOLDEN = {
    ("bookworm", PageAddOrder.SINGLE_PASS): "4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057"
    "fb887fed0744d5631a212967fb231c47",
    ("bookworm", PageAddOrder.TWO_PASS): "acccbcc870a381adab0d3919d90a7f268ac3b0364771f202ed4bb4e892d045b3"
    "3db3b32e6924cba830a724eed443f7e1",
    ("trixie", PageAddOrder.SINGLE_PASS): "bdc6fb145880f06f30c8b346b8dce2a99d9351b56892df22f80fcf6574caa9f9"
    "c31df8e8576d53b4d0cd1c3f28910e11",
    ("trixie", PageAddOrder.TWO_PASS): "456f07902150d008bb913c3e1e84e9297f735a6c83cd2a957a1f0a8bbedb06df"
    "188e3837ae48d32c73d473d097dc0db2",
}


@pytest.fixture(scope="module")
def firmware(trixie_ovmf: bytes) -> dict[str, bytes]:
    bookworm = BOOKWORM_OVMF.read_bytes()
    assert hashlib.sha256(bookworm).hexdigest() == measure_assets.BOOKWORM_OVMF_SHA256
    return {"bookworm": bookworm, "trixie": trixie_ovmf}


def naive_mrtd(fw: bytes, two_pass: bool) -> bytes:
    """Second implementation: find the descriptor by its GUID, build the whole record stream in memory."""
    guid = bytes.fromhex("f3f9eae98e16d544a8eb7f4d8738f6ae")  # e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae, bytes_le
    at = fw.rfind(guid + b"TDVF") + 16
    count = struct.unpack_from("<I", fw, at + 12)[0]
    stream = bytearray()
    for i in range(count):
        off, _raw, gpa, size, _typ, attr = struct.unpack_from("<IIQQII", fw, at + 16 + 32 * i)
        adds = [
            b"MEM.PAGE.ADD\0\0\0\0" + struct.pack("<Q", gpa + p) + bytes(104) for p in range(0, size, 4096)
        ]
        ext = []
        for p in range(0, size, 4096):
            page = []
            for c in range(0, 4096, 256):
                page.append(b"MR.EXTEND" + bytes(7) + struct.pack("<Q", gpa + p + c) + bytes(104))
                page.append(fw[off + p + c : off + p + c + 256])
            ext.append(b"".join(page) if attr & 1 else b"")
        if attr & 2:
            continue
        if two_pass:
            stream += b"".join(adds) + b"".join(ext)
        else:
            stream += b"".join(a + e for a, e in zip(adds, ext, strict=True))
    return hashlib.sha384(bytes(stream)).digest()


@pytest.mark.parametrize("key", list(GOLDEN))
def test_mrtd(key: tuple[str, PageAddOrder], firmware: dict[str, bytes]) -> None:
    fw = firmware[key[0]]
    ours = compute_mrtd(fw, key[1])
    assert ours.hex() == GOLDEN[key]
    assert ours == naive_mrtd(fw, key[1] is PageAddOrder.TWO_PASS)


def test_trixie_metadata_layout(firmware: dict[str, bytes]) -> None:
    sections = parse_tdvf(firmware["trixie"])
    assert [(s.type, s.gpa, s.memory_size, s.attributes) for s in sections] == [
        (SectionType.BFV, 0xFFC84000, 0x37C000, 1),
        (SectionType.CFV, 0xFFC00000, 0x84000, 0),
        (SectionType.TEMP_MEM, 0x811000, 0xF000, 0),
        (SectionType.TEMP_MEM, 0x80B000, 0x2000, 0),
        (SectionType.TD_HOB, 0x809000, 0x2000, 0),
        (SectionType.TEMP_MEM, 0x800000, 0x6000, 0),
    ]


def test_split_ovmf_code_has_no_metadata() -> None:
    with pytest.raises(MeasureError) as e:
        parse_tdvf(Path("/usr/share/OVMF/OVMF_CODE_4M.fd").read_bytes())
    assert e.value.code == "measure-no-tdvf-metadata"
    assert e.value.hint and "OVMF.fd" in e.value.hint


def test_corrupt_descriptor(firmware: dict[str, bytes]) -> None:
    fw = bytearray(firmware["trixie"])
    at = fw.rfind(b"TDVF")
    fw[at + 8] = 2  # version 2 is unknown
    with pytest.raises(MeasureError) as e:
        parse_tdvf(bytes(fw))
    assert e.value.code == "measure-tdvf-unknown"


def test_garbage_firmware() -> None:
    with pytest.raises(MeasureError) as e:
        compute_mrtd(bytes(4096))
    assert e.value.code == "measure-no-tdvf-metadata"
