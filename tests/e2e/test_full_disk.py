"""A full disk: `tdx store add` and `tdx fetch` into a store on an 8 MiB tmpfs give one line naming
the path and the space needed, a non-zero exit, and a store that still verifies with `tmp/` empty."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.errors import NoSpaceError
from tdxstore.store.store import Store
from tdxstore.store.verify import verify_store
from tests.fetchserver import FetchServer, big_digest, serve

REPO = Path(__file__).parents[2]


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    """TDX_HOME on its own 8 MiB tmpfs (mounting needs root, which the test machines have)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt / "home"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.fixture
def server() -> Iterator[FetchServer]:
    yield from serve()


def tdx(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *args], cwd=REPO, text=True, timeout=120,
                          env={**os.environ, "TDX_HOME": str(home)}, capture_output=True)


def _one_line(r: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode == 1 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    return errors[0]


def _still_valid(home: Path, expect: int) -> None:
    store = Store.open(home)
    report = verify_store(store)
    assert report.ok and report.garbage == () and report.checked == expect, report
    assert os.listdir(home / "tmp") == []
    store.close()


def test_store_add_on_a_full_disk(small_home: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_text("fits\n")
    assert tdx(small_home, "store", "add", str(small)).returncode == 0
    big = tmp_path / "big"
    big.mkdir()
    for i in range(3):
        (big / f"f{i}").write_bytes(os.urandom(4 << 20))
    line = _one_line(tdx(small_home, "store", "add", str(big)))
    assert "no space left" in line and repr(str(small_home / "tmp")) in line and repr(str(big)) in line
    assert "needs 12.0 MiB" in line and "free" in line
    _still_valid(small_home, 1)
    with pytest.raises(NoSpaceError) as e:
        Store.open(small_home).add_path(big)
    assert e.value.code == "no-space"
    _still_valid(small_home, 1)


def test_fetch_on_a_full_disk(small_home: Path, server: FetchServer) -> None:
    r = tdx(small_home, "fetch", server.url("big/12"), "--sha256", big_digest(12), "--name", "big")
    line = _one_line(r)
    assert "no space left" in line and server.url("big/12") in line and "needs 12.0 MiB" in line
    _still_valid(small_home, 1)  # the fetch's .drv


def test_a_completely_full_disk_is_not_called_a_corrupt_database(small_home: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_text("fits\n")
    assert tdx(small_home, "store", "add", str(small)).returncode == 0
    filler = small_home.parent / "filler"
    with open(filler, "wb") as f, pytest.raises(OSError):
        while True:  # until ENOSPC: not one free block is left for SQLite's shared-memory file
            f.write(b"\0" * (1 << 20))
            f.flush()
    for args in (["store", "ls"], ["store", "verify", "--repair-db"]):
        line = _one_line(tdx(small_home, *args))
        assert "no space left" in line and "cannot be read" not in line
    assert not list(small_home.glob("db.sqlite.corrupt-*"))  # --repair-db did not move it aside
    filler.unlink()
    _still_valid(small_home, 1)
