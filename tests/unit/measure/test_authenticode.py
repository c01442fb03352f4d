from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import lief
import pytest

from tdxstore.errors import MeasureError
from tdxstore.measure.authenticode import authenticode_sha384, parse_pe


def lief_hash(path: Path) -> bytes:
    return bytes(lief.PE.parse(str(path)).authentihash(lief.PE.ALGORITHMS.SHA_384))


@pytest.mark.parametrize("which", ["kernel_path", "uki_path", "stub_path"])
def test_equal_to_lief_on_real_images(which: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(which)
    assert authenticode_sha384(path.read_bytes()) == lief_hash(path)


@pytest.mark.parametrize("extra", [1, 5, 7, 513])
def test_equal_to_lief_with_trailing_data(extra: int, uki_path: Path, tmp_path: Path) -> None:
    odd = tmp_path / "odd.efi"
    odd.write_bytes(uki_path.read_bytes() + bytes(range(extra % 256)) * (extra // 256 + 1))
    assert len(odd.read_bytes()) % 8 != 0 or extra == 513
    assert authenticode_sha384(odd.read_bytes()) == lief_hash(odd)


def edk2_rule(data: bytes) -> bytes:
    """Independent statement of edk2's rule for a PE32+ without certificates (offsets read by hand)."""
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    opt = pe + 24
    nsec, optsize = struct.unpack_from("<H", data, pe + 6)[0], struct.unpack_from("<H", data, pe + 20)[0]
    soh = struct.unpack_from("<I", data, opt + 60)[0]
    cks, sec_dir = opt + 64, opt + 112 + 4 * 8
    h = hashlib.sha384(data[:cks] + data[cks + 4 : sec_dir] + data[sec_dir + 8 : soh])
    hashed = soh
    secs = [struct.unpack_from("<IIII", data, opt + optsize + 40 * i + 8) for i in range(nsec)]
    for _vs, _va, rsize, roff in sorted(secs, key=lambda s: s[3]):
        if rsize:
            h.update(data[roff : roff + rsize])
            hashed += rsize
    h.update(data[hashed:])
    return h.digest()


def test_gap_follows_edk2_not_lief(stub_path: Path, tmp_path: Path) -> None:
    data = bytearray(stub_path.read_bytes())
    layout = parse_pe(bytes(data))
    first = min(s.raw_offset for s in layout.sections if s.raw_size)
    # Shrink SizeOfHeaders so a 0x200-byte gap lies between the headers and the first section.
    assert layout.size_of_headers == first and first >= 0x400
    opt = struct.unpack_from("<I", data, 0x3C)[0] + 24
    struct.pack_into("<I", data, opt + 60, first - 0x200)
    gap = tmp_path / "gap.efi"
    gap.write_bytes(bytes(data))
    ours = authenticode_sha384(bytes(data))
    assert ours == edk2_rule(bytes(data))
    assert ours != lief_hash(gap)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "measure-not-pe"),
        (b"MZ", "measure-pe-truncated"),
        (b"MZ" + bytes(100), "measure-not-pe"),
        (b"hello world, not a PE file" * 10, "measure-not-pe"),
    ],
)
def test_bad_pe(data: bytes, code: str) -> None:
    with pytest.raises(MeasureError) as e:
        authenticode_sha384(data)
    assert e.value.code == code


def test_truncated_section_data(uki_path: Path) -> None:
    data = uki_path.read_bytes()
    with pytest.raises(MeasureError) as e:
        authenticode_sha384(data[: len(data) // 2])
    assert e.value.code == "measure-pe-truncated"
