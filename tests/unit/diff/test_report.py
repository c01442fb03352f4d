"""The report over two small image-like directories with deliberate changes, against golden text and JSON.

Regenerate the golden files after an intended format change with TDX_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tdxstore.diff import Change, Finding, compare_paths
from tdxstore.errors import DiffError
from tests.diff_assets import DPKG_STATUS, cpio_bytes, tar_bytes

GOLDEN = Path(__file__).parents[2] / "data" / "diff"


def _image(root: Path, *, built: str, blob: bytes, extra: bool, hello: str, init: bytes) -> Path:
    root.mkdir()
    files: dict[str, bytes | str] = {
        "etc/built": built.encode(),
        "usr/bin/blob": blob,
        "usr/bin/sh": "dash",
        "var/lib/dpkg/status": DPKG_STATUS.replace("2.10-3", hello).encode(),
    }
    if extra:
        files["etc/extra.conf"] = b"x=1\n"
    (root / "image.tar").write_bytes(tar_bytes(files))
    (root / "initrd.img").write_bytes(cpio_bytes(root.parent / f"{root.name}-cpio", {"init": init}, compress=True))
    (root / "measurements.json").write_text('{"measurements": {"MRTD": "00"}}\n')
    return root


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    a = _image(tmp_path / "a", built="Mon Dec  1 10:00:00 UTC 2026\n", blob=b"\x7fELF\0\1", extra=False,
               hello="2.10-3", init=b"#!/bin/sh\nexec /sbin/init\n")
    b = _image(tmp_path / "b", built="Mon Dec  1 10:05:17 UTC 2026\n", blob=b"\x7fELF\0\2", extra=True,
               hello="2.10-4", init=b"#!/bin/sh\nexec /sbin/init quiet\n")
    return a, b


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("TDX_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_report_text_matches_golden(tmp_path: Path) -> None:
    report = compare_paths(*_pair(tmp_path), "a", "b")
    assert report.artifacts() == ["image.tar", "initrd.img"]  # measurements.json is identical: not named
    _golden("report.txt", report.render())


def test_report_json_matches_golden(tmp_path: Path) -> None:
    report = compare_paths(*_pair(tmp_path), "a", "b")
    _golden("report.json", json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")


def test_each_deliberate_change_is_named(tmp_path: Path) -> None:
    findings = {f.where: f for f in compare_paths(*_pair(tmp_path), "a", "b").findings}
    built = findings[("image.tar", "etc/built")]
    assert built.change is Change.CHANGED
    assert "-Mon Dec  1 10:00:00 UTC 2026" in built.detail and "+Mon Dec  1 10:05:17 UTC 2026" in built.detail
    assert findings[("image.tar", "etc/extra.conf")].change is Change.ADDED
    assert findings[("image.tar", "usr/bin/blob")].summary.startswith("binary differs: size 6 -> 6, sha256 ")
    assert findings[("image.tar", "package hello")].summary == "package hello 2.10-3 -> 2.10-4"
    init = findings[("initrd.img", "init")]
    assert "+exec /sbin/init quiet" in init.detail


def test_identical_directories_one_line(tmp_path: Path) -> None:
    a, _ = _pair(tmp_path)
    report = compare_paths(a, a, "a", "a")
    assert report.identical and report.render() == "identical: a and a\n"


def test_file_against_directory_is_refused(tmp_path: Path) -> None:
    a, _ = _pair(tmp_path)
    with pytest.raises(DiffError) as e:
        compare_paths(a, a / "image.tar")
    assert e.value.code == "diff-kind-mismatch"


def test_finding_needs_a_location() -> None:
    with pytest.raises(DiffError):
        Finding((), Change.ADDED, "x")


def test_deep_report_by_diffoscope(tmp_path: Path) -> None:
    """diffoscope (installed by scripts/setup) gives the deep report after the summary: it opens the tar too."""
    from tdxstore.diff import diffoscope

    a, b = _pair(tmp_path)
    text = diffoscope(a / "image.tar", b / "image.tar")
    assert text is not None and "etc/built" in text and "10:05:17" in text
    assert diffoscope(a / "image.tar", a / "image.tar") == "diffoscope: no differences\n"
