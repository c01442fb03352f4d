from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tdxstore.errors import MeasureError
from tdxstore.measure.event import replay, sha384
from tdxstore.measure.rtmr2 import (
    CANONICAL_SECTIONS,
    combine_initrd,
    initrd_parts,
    literal_cpio,
    load_options,
    mangle_cmdline,
    rtmr2_events,
    section_events,
)
from tdxstore.measure.uki import parse_uki
from tests import measure_assets

CMDLINE = measure_assets.UNIT_CMDLINE

# systemd-measure 254 knows these section switches; each file is fed at VirtualSize length.
MEASURE_SWITCHES = (
    ".linux",
    ".osrel",
    ".cmdline",
    ".initrd",
    ".splash",
    ".dtb",
    ".uname",
    ".sbat",
    ".pcrpkey",
)


def patch_section(uki: bytes, name: str, content: bytes) -> bytes:
    """A copy of `uki` whose section `name` holds `content` (same length: no PE layout change)."""
    sec = next(s for s in parse_uki(uki).layout.sections if s.name == name)
    assert len(content) == sec.virtual_size
    return uki[: sec.raw_offset] + content + uki[sec.raw_offset + len(content) :]


def test_stub_part_equals_systemd_measure(uki_path: Path, tmp_path: Path) -> None:
    uki = parse_uki(uki_path.read_bytes())
    argv, env = measure_assets.systemd_measure()
    for name in MEASURE_SWITCHES:
        if name in uki.sections:
            (tmp_path / name[1:]).write_bytes(uki.sections[name])
            argv.append(f"--{name[1:]}={tmp_path / name[1:]}")
    assert not set(uki.sections) & {
        ".ucode",
        ".profile",
        ".dtbauto",
        ".hwids",
    }  # unknown to systemd-measure 254
    argv += ["calculate", "--bank=sha384", "--phase="]
    out = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, check=True, text=True).stdout
    expected = out.split("sha384=", 1)[1][:96]
    assert replay(section_events(uki))["RTMR2"].hex() == expected


def test_events_in_canonical_order(uki_path: Path) -> None:
    uki = parse_uki(uki_path.read_bytes())
    events = rtmr2_events(uki)
    names = [e.description.rsplit(" ", 1)[-1] for e in events if e.description.startswith("UKI section name")]
    assert names == [n for n in CANONICAL_SECTIONS if n in uki.sections and n != ".pcrsig"]
    cmdline = mangle_cmdline(uki.sections[".cmdline"])
    assert events[-2].description == f"kernel command line {cmdline!r}"
    assert events[-2].digest == sha384(cmdline.encode("utf-16-le") + b"\0\0")
    assert events[-1].description.startswith("initrd (")
    if not os.environ.get("TDX_MEASURE_UKI"):
        assert names == [".linux", ".osrel", ".cmdline", ".initrd", ".uname", ".sbat"]
        assert cmdline == CMDLINE
        assert "generated cpio .extra/os-release" in events[-1].description


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"console=ttyS0 quiet", "console=ttyS0 quiet"),
        (b"  \tconsole=ttyS0\nquiet \n\0garbage", "console=ttyS0 quiet"),
        (b"a\x7fb\x01c", "a b c"),
        ("root=/dev/vda ünïcode".encode(), "root=/dev/vda ünïcode"),
        (b"", ""),
    ],
)
def test_mangle_cmdline(raw: bytes, expected: str) -> None:
    assert mangle_cmdline(raw) == expected


def test_load_options_is_utf16_with_nul() -> None:
    assert load_options("ab") == b"a\0b\0\0\0"


def test_literal_cpio_is_a_valid_newc_archive(tmp_path: Path) -> None:
    archive = literal_cpio(".extra", "os-release", b"ID=test\nVERSION_ID=1\n")
    assert len(archive) % 4 == 0
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=archive, capture_output=True, check=True).stdout
    assert listing.split() == [b".extra", b".extra/os-release"]
    subprocess.run(
        ["cpio", "-id", "--quiet", "--no-absolute-filenames"], input=archive, cwd=tmp_path, check=True
    )
    out = tmp_path / ".extra/os-release"
    assert out.read_bytes() == b"ID=test\nVERSION_ID=1\n"
    assert oct(out.stat().st_mode & 0o7777) == "0o444"


def test_initrd_padding_rules() -> None:
    assert combine_initrd([b"abcde"]) == b"abcde"
    assert combine_initrd([b"abcde", b"xy"]) == b"abcde\0\0\0xy\0\0"


def test_initrd_parts_follow_stub_version(uki_path: Path) -> None:
    uki = parse_uki(uki_path.read_bytes())
    assert [n for n, _ in initrd_parts(uki, 257)] == [
        "UKI section .initrd",
        "generated cpio .extra/os-release",
    ]
    assert [n for n, _ in initrd_parts(uki, 256)] == ["UKI section .initrd"]


def test_stub_too_old(uki_path: Path) -> None:
    data = uki_path.read_bytes()
    magic = parse_uki(data).sections[".sdmagic"]
    old = magic.replace(b"systemd-stub 257.", b"systemd-stub 255.")
    with pytest.raises(MeasureError) as e:
        rtmr2_events(parse_uki(patch_section(data, ".sdmagic", old)))
    assert e.value.code == "measure-stub-too-old"
    assert "255" in e.value.message


def test_stub_unknown(uki_path: Path) -> None:
    data = uki_path.read_bytes()
    magic = parse_uki(data).sections[".sdmagic"]
    with pytest.raises(MeasureError) as e:
        rtmr2_events(parse_uki(patch_section(data, ".sdmagic", bytes(len(magic)))))
    assert e.value.code == "measure-stub-unknown"


@pytest.mark.parametrize("which", ["kernel_path", "stub_path"])
def test_not_a_uki(which: str, request: pytest.FixtureRequest) -> None:
    with pytest.raises(MeasureError) as e:
        parse_uki(request.getfixturevalue(which).read_bytes())
    assert e.value.code == "measure-not-uki"
    assert ".linux" in e.value.message


def test_garbage_is_not_a_uki() -> None:
    with pytest.raises(MeasureError) as e:
        parse_uki(b"\x7fELF" + bytes(200))
    assert e.value.code == "measure-not-uki"


def test_uki_metadata(uki_path: Path) -> None:
    uki = parse_uki(uki_path.read_bytes())
    assert uki.stub_major is not None and uki.stub_major >= 256
    assert uki.kernel_release and uki.kernel_release.startswith("6.")
    assert uki.os_release.get("ID")
