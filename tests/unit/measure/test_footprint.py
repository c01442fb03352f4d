"""`uki_footprint`: the sizes `tdx build` reports, checked on a UKI built by ukify around a cpio made by
GNU cpio (zstd-compressed, as mkosi's initrds are) and a second, uncompressed archive appended."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import zstandard

from tdxstore.errors import MeasureError
from tdxstore.measure.footprint import cpio_sizes, uki_footprint
from tests import measure_assets

FILES = {
    "usr/lib/modules/6.12/kernel/big.ko": 300_000,
    "usr/lib/modules/6.12/kernel/small.ko": 1_000,
    "usr/share/doc/pkg/copyright": 20_000,
    "usr/share/locale/de/LC_MESSAGES/x.mo": 50_000,
    "etc/hostname": 7,
}


def _cpio(root: Path) -> bytes:
    for rel, size in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * size)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    return subprocess.run(["cpio", "-o", "-H", "newc", "--quiet", "--reproducible"], input="\n".join(names).encode(),
                          cwd=root, capture_output=True, check=True).stdout


def test_sections_and_largest_directories(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    archive = _cpio(tmp_path / "root")
    assert cpio_sizes(archive) == FILES
    initrd = zstandard.ZstdCompressor().compress(archive)
    (tmp_path / "uki").mkdir()
    data = measure_assets.build_uki(tmp_path / "uki" / "t.efi", initrd, "console=ttyS0").read_bytes()
    fp = uki_footprint(data, directories=3)
    assert fp.total == len(data)
    names = [n for n, _ in fp.sections]
    assert names[0] == ".linux" and ".initrd" in names  # the kernel is larger than this small initrd
    assert dict(fp.sections)[".initrd"] >= len(initrd)
    assert fp.initrd_size == sum(FILES.values())
    assert fp.directories == (("usr/lib/modules", 301_000), ("usr/share/locale", 50_000),
                              ("usr/share/doc", 20_000))
    lines = fp.describe()
    assert lines[0].startswith(f"UKI {len(data) / 1e6:.1f} MB: .linux ")
    assert lines[1].startswith("initrd holds 0.4 MB of files; largest: usr/lib/modules 0.3 MB")
    assert uki_footprint(data).directories == ()  # the cheap form reads only the PE sections


def test_concatenated_archives_and_garbage(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    archive = _cpio(tmp_path / "root")
    assert len(cpio_sizes(archive + b"\0" * 512 + archive)) == len(FILES)
    with pytest.raises(MeasureError) as e:
        cpio_sizes(archive + b"garbage that is not a header" * 10)
    assert e.value.code == "measure-bad-initrd"
