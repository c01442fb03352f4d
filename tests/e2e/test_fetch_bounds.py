"""Bounded fetches: a size limit (the declared length, else --max-size), an overall deadline, no
endless local sources, and `tdx fetch FILE|DIR` behaving as `--help` says. Real servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.cli.fetch import parse_size
from tdxstore.errors import FetchError, UsageError
from tdxstore.fetch.download import DEFAULT_LIMITS, Limits, download
from tests.fetchserver import FetchServer, big_digest, serve

REPO = Path(__file__).parents[2]
ZERO = "0" * 64


@pytest.fixture
def server() -> Iterator[FetchServer]:
    yield from serve()


def tdx(home: Path, *args: str | Path) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *map(str, args)], cwd=REPO, text=True,
                       env={**os.environ, "TDX_HOME": str(home)}, capture_output=True, timeout=120)
    return r, time.monotonic() - t0


def one_error(r: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode != 0 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    return errors[0]


def test_an_endless_body_stops_at_the_limit(tmp_path: Path, server: FetchServer) -> None:
    with pytest.raises(FetchError) as e:
        download(server.url("endless"), tmp_path / "x", expected_sha256=None, limits=Limits(max_size=1 << 20))
    assert e.value.code == "too-large"
    assert os.listdir(tmp_path) == []
    home = tmp_path / "home"
    r, _ = tdx(home, "fetch", server.url("endless"), "--sha256", ZERO, "--max-size", "2M")
    assert "larger than 2097152 bytes" in one_error(r) and "--max-size" in r.stderr
    assert os.listdir(home / "tmp") == []
    r, _ = tdx(home, "fetch", "--hash", server.url("endless"), "--max-size", "1M")
    assert "larger than 1048576 bytes" in one_error(r)
    assert os.listdir(home / "tmp") == []


def test_a_declared_length_is_the_limit(tmp_path: Path, server: FetchServer) -> None:
    r, _ = tdx(tmp_path / "home", "fetch", server.url("big/3"), "--sha256", big_digest(3), "--max-size", "1M")
    assert r.returncode == 0, r.stderr


def test_the_deadline_bounds_trickling_and_silent_servers(tmp_path: Path, server: FetchServer) -> None:
    for route in ("trickle", "silent"):
        with pytest.raises(FetchError) as e:
            download(server.url(route), tmp_path / "x", expected_sha256=None, limits=Limits(deadline=1.0))
        assert e.value.code == "fetch-deadline", (route, e.value.message)
        r, took = tdx(tmp_path / "home", "fetch", server.url(route), "--sha256", ZERO, "--deadline", "1")
        assert "longer than its deadline of 1 s" in one_error(r) and took < 10, (route, took)
    assert DEFAULT_LIMITS.deadline == 6 * 3600 and DEFAULT_LIMITS.max_size == 4 << 30  # as documented


def test_device_files_are_refused_not_read_forever(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r, took = tdx(home, "fetch", "--hash", "/dev/zero")
    assert "is not a regular file or a directory" in one_error(r) and took < 10
    r, took = tdx(home, "fetch", "file:///dev/zero", "--sha256", ZERO)
    assert "is not a regular file" in one_error(r) and took < 10
    with pytest.raises(FetchError) as e:
        download("file:///dev/zero", tmp_path / "z", expected_sha256=None)
    assert e.value.code == "not-a-file"


def test_local_file_and_directory_as_help_says(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r, _ = tdx(home, "fetch", "--help")
    assert "local file" in r.stdout
    f = tmp_path / "payload.bin"
    f.write_bytes(b"payload\n")
    r, _ = tdx(home, "fetch", f, "--sha256", hashlib.sha256(b"payload\n").hexdigest())
    assert r.returncode == 0 and r.stdout.strip().endswith("-payload.bin"), r.stderr
    r, _ = tdx(home, "fetch", tmp_path, "--sha256", ZERO)
    line = one_error(r)
    assert "is a directory" in line and "malformed URL" not in line and "tdx store add" in r.stderr
    r, _ = tdx(home, "fetch", tmp_path / "absent", "--sha256", ZERO)
    assert "neither an existing file nor a URL" in one_error(r)


@pytest.mark.parametrize(("text", "size"), [("4G", 4 << 30), ("512M", 512 << 20), ("100k", 102400), ("7", 7),
                                            ("2MiB", 2 << 20), ("1T", 1 << 40)])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "-1", "1.5G", "G", "3x"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)
