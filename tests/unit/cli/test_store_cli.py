"""`tdx store …` and `tdx realise` through the real CLI entry point: output, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[3]


def tdx(home: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TDX_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *args], cwd=REPO, env=env,
                          capture_output=True, input=input, timeout=120)


def one_error(r: subprocess.CompletedProcess[bytes]) -> str:
    err = r.stderr.decode()
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_help_lists_commands(tmp_path: Path) -> None:
    r = tdx(tmp_path, "--help")
    assert r.returncode == 0
    for cmd in ("store", "realise", "fetch", "build", "measure", "log", "show-derivation", "why-depends"):
        assert cmd in r.stdout.decode()


def test_add_ls_path_info_dump(tmp_path: Path) -> None:
    home = tmp_path / "h"
    src = tmp_path / "d"
    src.mkdir()
    (src / "f").write_text("hello\n")
    r = tdx(home, "store", "add", str(src), "--name", "demo")
    assert r.returncode == 0, r.stderr
    sp = r.stdout.decode().strip()
    assert sp.startswith("/tdx/store/") and sp.endswith("-demo")
    assert tdx(home, "store", "add", str(src), "--name", "demo").stdout.decode().strip() == sp
    assert tdx(home, "store", "ls").stdout.decode().split() == [sp]
    info = tdx(home, "store", "path-info", sp).stdout.decode()
    assert "nar-hash:      sha256:" in info and "references:    0" in info
    nar = tdx(home, "store", "dump", sp).stdout
    assert nar.startswith(b"\x0d\x00\x00\x00\x00\x00\x00\x00nix-archive-1")
    if Path("/usr/bin/nix-store").exists():
        assert nar == subprocess.run(["nix-store", "--dump", str(src)], capture_output=True, check=True).stdout


@pytest.mark.parametrize(("args", "code", "fragment"), [
    (["store", "add", "/nonexistent/x"], 1, "no such file or directory"),
    (["store", "path-info", "/etc/passwd"], 1, "is not in the store"),
    (["store", "path-info", "/tdx/store/" + "0" * 32 + "-ghost"], 1, "is not valid in this store"),
    (["store", "delete", "/tdx/store/" + "0" * 32 + "-ghost"], 1, "is not valid in this store"),
    (["store", "add", "/etc/hostname", "--name", ".bad"], 1, "starts with a dot"),
    (["realise", "/nonexistent.py"], 1, "does not exist"),
    (["log", "/tdx/store/" + "0" * 32 + "-ghost"], 1, "is not valid"),
])
def test_bad_input_is_one_clear_error(tmp_path: Path, args: list[str], code: int, fragment: str) -> None:
    r = tdx(tmp_path / "h", *args)
    assert r.returncode == code
    assert fragment in one_error(r)


def test_user_error_in_derivation_file_shows_user_traceback(tmp_path: Path) -> None:
    f = tmp_path / "bad.py"
    f.write_text("x = 1\ndef broken():\n    raise ValueError('boom')\nbroken()\n")
    r = tdx(tmp_path / "h", "realise", str(f))
    assert r.returncode == 1
    err = r.stderr.decode()
    assert err.startswith("error: bad.py raised ValueError: boom\n")
    assert "bad.py\", line 3" in err and "bad.py\", line 4" in err
    assert "tdxstore" not in err and "runpy" not in err


def test_corrupt_database_then_repair(tmp_path: Path) -> None:
    home = tmp_path / "h"
    (tmp_path / "f").write_text("x")
    sp = tdx(home, "store", "add", str(tmp_path / "f")).stdout.decode().strip()
    (home / "db.sqlite").write_bytes(b"not sqlite" * 50)
    for s in ("-wal", "-shm"):
        Path(f"{home}/db.sqlite{s}").unlink(missing_ok=True)
    r = tdx(home, "store", "ls")
    assert r.returncode == 1 and "cannot be read" in one_error(r)
    assert "tdx store verify --repair-db" in r.stderr.decode()
    r = tdx(home, "store", "verify", "--repair-db")
    assert r.returncode == 0, r.stderr
    assert tdx(home, "store", "ls").stdout.decode().split() == [sp]


def test_verify_reports_corruption_with_nonzero_exit(tmp_path: Path) -> None:
    home = tmp_path / "h"
    (tmp_path / "f").write_text("x")
    sp = tdx(home, "store", "add", str(tmp_path / "f")).stdout.decode().strip()
    real = home / "store" / sp.rsplit("/", 1)[1]
    real.chmod(0o644)
    real.write_text("y")
    r = tdx(home, "store", "verify")
    assert r.returncode == 1 and f"corrupted: {sp}" in r.stdout.decode()


def test_gc_reports_freed_bytes(tmp_path: Path) -> None:
    home = tmp_path / "h"
    (tmp_path / "f").write_bytes(b"x" * 5000)
    tdx(home, "store", "add", str(tmp_path / "f"))
    r = tdx(home, "store", "gc", "--dry-run")
    assert "would delete 1 paths" in r.stderr.decode()
    r = tdx(home, "store", "gc")
    assert "deleted 1 paths, freed 4.9 KiB" in r.stderr.decode()
    assert tdx(home, "store", "ls").stdout == b""
