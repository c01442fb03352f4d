"""Messages that used to mislead: a '..' path, an empty name, and what killed processes leave in tmp/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tdxstore.errors import StorePathError
from tdxstore.store.path import StorePath

REPO = Path(__file__).parents[3]


def tdx(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *args], cwd=REPO, text=True, timeout=120,
                          env={**os.environ, "TDX_HOME": str(home)}, capture_output=True)


def one_error(r: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode == 1 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    return errors[0]


@pytest.mark.parametrize(("text", "says"), [
    ("/tdx/store/../../etc/passwd", "is outside the store"),
    ("/tdx/store/../etc", "is outside the store"),
    ("/tdx/store/" + "0" * 32 + "-x/../" + "1" * 32 + "-y", "is not a store path"),
])
def test_dot_dot_paths(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(StorePathError) as e:
        StorePath.parse(text)
    assert e.value.code == "not-in-store" and says in e.value.message
    assert says in one_error(tdx(tmp_path, "store", "path-info", text))


@pytest.mark.parametrize("flat", [False, True])
def test_empty_name_is_an_error(tmp_path: Path, flat: bool) -> None:
    f = tmp_path / "file"
    f.write_text("x\n")
    r = tdx(tmp_path / "home", "store", "add", str(f), "--name", "", *(["--flat"] if flat else []))
    assert "store path name is empty" in one_error(r)
    assert tdx(tmp_path / "home", "store", "ls").stdout == ""


def test_verify_reports_what_killed_processes_left_in_tmp(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert tdx(home, "store", "ls").returncode == 0
    dead = home / "tmp" / f"{2 ** 30}-build-abcdefgh-probe"  # no such pid (above the kernel's pid_max)
    (dead / "build").mkdir(parents=True)
    (dead / "build" / "junk").write_bytes(b"j" * 4096)
    live = home / "tmp" / f"{os.getpid()}-add-xyz"  # a process that is still running: not reported
    live.mkdir()
    r = tdx(home, "store", "verify")
    assert r.returncode == 0, r.stderr
    assert f"leftover of a killed process (removed by gc): {dead} (" in r.stdout and "KiB)" in r.stdout
    assert str(live) not in r.stdout
    assert tdx(home, "store", "gc").returncode == 0
    assert not dead.exists() and live.exists()
    assert "leftover" not in tdx(home, "store", "verify").stdout


@pytest.mark.parametrize(("output", "says"), [
    ("nodir/b.tdx", "No such file or directory"),
    ("afile/b.tdx", "Not a directory"),
    ("adir", "it is a directory"),
], ids=["missing-directory", "under-a-file", "a-directory"])
def test_export_to_an_output_that_cannot_be_written(tmp_path: Path, output: str, says: str) -> None:
    """One message naming the -o path, before any bundle byte is written; nothing is left behind."""
    src = tmp_path / "f.txt"
    src.write_text("x\n")
    home = tmp_path / "home"
    sp = tdx(home, "store", "add", str(src)).stdout.strip()
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    error = one_error(tdx(home, "store", "export", sp, "-o", str(tmp_path / output)))
    assert error.startswith(f"error: cannot write the bundle {str(tmp_path / output)!r}: ") and says in error
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
