"""The archive readers on real archives: Python's tarfile output, GNU cpio newc (plain, zstd, concatenated)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from tdxstore.diff import initrd_entries, packages, services, tar_entries
from tdxstore.errors import DiffError
from tests.diff_assets import DPKG_STATUS, MTIME, cpio_bytes, tar_bytes


def test_tar_members_are_hashed_and_small_contents_kept() -> None:
    entries = tar_entries(tar_bytes({"./etc/built": b"Mon\n", "usr/bin/sh": "dash"}))
    assert set(entries) == {"etc/built", "usr/bin/sh"}
    built = entries["etc/built"]
    assert (built.kind, built.size, built.mtime, built.data) == ("file", 4, MTIME, b"Mon\n")
    assert built.sha256 == hashlib.sha256(b"Mon\n").hexdigest()
    assert entries["usr/bin/sh"].kind == "symlink" and entries["usr/bin/sh"].link == "dash"


@pytest.mark.parametrize("compress", [False, True])
def test_cpio_newc_plain_and_zstd(tmp_path: Path, compress: bool) -> None:
    data = cpio_bytes(tmp_path, {"init": b"#!/bin/sh\n", "etc/os-release": b"ID=debian\n"}, compress=compress)
    entries = initrd_entries(data)
    assert {n for n, e in entries.items() if e.kind == "file"} == {"init", "etc/os-release"}
    assert entries["etc/os-release"].data == b"ID=debian\n"
    assert entries["init"].mtime == MTIME


def test_concatenated_initrd_later_member_wins(tmp_path: Path) -> None:
    """An early plain cpio (microcode-style), then a compressed one holding the same name: unpacking order."""
    first = cpio_bytes(tmp_path / "a", {"etc/x": b"first\n", "early": b"ucode"}, compress=False)
    second = cpio_bytes(tmp_path / "b", {"etc/x": b"second\n"}, compress=True)
    entries = initrd_entries(first + bytes(512) + second + bytes(7))
    assert entries["etc/x"].data == b"second\n"
    assert entries["early"].data == b"ucode"


def test_gzip_initrd(tmp_path: Path) -> None:
    data = gzip.compress(cpio_bytes(tmp_path, {"a": b"A\n"}, compress=False), mtime=0)
    assert initrd_entries(data)["a"].data == b"A\n"


@pytest.mark.parametrize("bad", [b"070701" + b"zz" * 60, b"070701" + b"0" * 104, b"\x28\xb5\x2f\xfd\x00\x00garbage"])
def test_malformed_initrd_is_one_error(bad: bytes) -> None:
    with pytest.raises(DiffError) as e:
        initrd_entries(bad)
    assert e.value.code == "diff-bad-archive"


def test_not_a_tar_is_one_error() -> None:
    with pytest.raises(DiffError) as e:
        tar_entries(b"this is not a tar archive" * 40)
    assert e.value.code == "diff-bad-archive"


def test_packages_and_units_from_the_file_system() -> None:
    entries = tar_entries(tar_bytes({
        "var/lib/dpkg/status": DPKG_STATUS.encode(),
        "etc/systemd/system/hello.service": b"[Service]\nExecStart=/bin/true\n",
        "etc/systemd/system/multi-user.target.wants/hello.service": "../hello.service",
    }))
    assert packages(entries) == {"base-files": "12.4", "hello": "2.10-3"}
    assert set(services(entries)) == {"hello.service", "multi-user.target.wants/hello.service"}
