"""`tdx fetch` as a user runs it (a subprocess, TDX_HOME in a temp dir, server on 127.0.0.1).

Proves: --hash of a URL and of a file prints sha256:<hex> only; URL --sha256 pre-populates the
store and prints the store path; stderr stays empty off a terminal (no progress bar); every bad
input exits non-zero with exactly one `error:` line naming the cause.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fetchserver import FetchServer, free_port, serve

REPO = Path(__file__).resolve().parents[2]
BODY = b"tdx fetch cli test\n" * 1000
HEX = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def server() -> Iterator[FetchServer]:
    for srv in serve():
        srv.files["tool.tar.gz"] = BODY
        yield srv


def tdx(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *args], cwd=REPO, text=True,
                          capture_output=True, env={**os.environ, "TDX_HOME": str(home)}, timeout=120)


def test_hash_of_url_and_file(server: FetchServer, tmp_path: Path) -> None:
    out = tdx(tmp_path / "tdx", "fetch", "--hash", server.url("file/tool.tar.gz"))
    assert (out.returncode, out.stdout, out.stderr) == (0, f"sha256:{HEX}\n", "")
    local = tmp_path / "tool.tar.gz"
    local.write_bytes(BODY)
    out = tdx(tmp_path / "tdx", "fetch", "--hash", str(local))
    assert (out.returncode, out.stdout) == (0, f"sha256:{HEX}\n")


def test_prepopulate_then_offline(server: FetchServer, tmp_path: Path) -> None:
    url = server.url("file/tool.tar.gz")
    out = tdx(tmp_path / "tdx", "fetch", url, "--sha256", HEX)
    assert out.returncode == 0, out.stderr
    logical = out.stdout.strip()
    assert logical.startswith("/tdx/store/") and logical.endswith("-tool.tar.gz")
    assert (tmp_path / "tdx" / "store" / logical.rsplit("/", 1)[1]).read_bytes() == BODY
    server.stop()
    again = tdx(tmp_path / "tdx", "fetch", url, "--sha256", f"sha256:{HEX}")
    assert (again.returncode, again.stdout.strip()) == (0, logical)


@pytest.mark.parametrize(("args", "fragment", "code"), [
    (["--hash", "not a url"], "neither an existing file nor a URL", 2),
    (["--hash", "ftp://example.org/x"], "unsupported URL scheme 'ftp'", 2),
    (["--hash", "https:///x"], "no host name", 2),
    (["https://example.org/x.tar.gz", "--sha256", "xyz"], "malformed SHA-256 hash 'xyz'", 2),
    (["https://example.org/x.tar.gz"], "has no sha256", 2),
    (["--hash", "https://example.org/x", "--sha256", "a" * 64], "--hash and --sha256 exclude", 2),
    (["--hash", "https://example.org/x", "--tag", "v1"], "need --git", 2),
    (["--hash", "--git", "https://example.org/r.git", "--tag", "v1", "--rev", "a" * 40],
     "both tag= and rev=", 2),
    (["--hash", "--git", "https://example.org/r.git", "--rev", "abc"], "not a full commit id", 2),
    (["--hash", "LOCAL_PORT/missing.tar.gz"], "HTTP 404", 1),
    (["--hash", "DEAD_PORT/x.tar.gz"], "connection refused", 1),
    (["LOCAL_PORT/tool.tar.gz", "--sha256", "0" * 64], "hash mismatch for", 1),
])
def test_bad_input(server: FetchServer, tmp_path: Path, args: list[str], fragment: str, code: int) -> None:
    args = [a.replace("LOCAL_PORT", server.base + "/file").replace("DEAD_PORT", f"http://127.0.0.1:{free_port()}")
            for a in args]
    out = tdx(tmp_path / "tdx", "fetch", *args)
    assert out.returncode == code, out.stderr
    assert out.stdout == ""
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], out.stderr
    assert "Traceback" not in out.stderr
    store_dir = tmp_path / "tdx" / "store"
    # nothing but a fetch's .drv (its description, registered before the download) may be there
    assert not [p for p in store_dir.glob("*") if p.suffix != ".drv"] if store_dir.exists() else True


def test_mismatch_message_on_cli(server: FetchServer, tmp_path: Path) -> None:
    url = server.url("file/tool.tar.gz")
    out = tdx(tmp_path / "tdx", "fetch", url, "--sha256", "0" * 64)
    assert out.stderr == (
        f"error: hash mismatch for {url}\n"
        f"  Expected: sha256:{'0' * 64}\n"
        f"  Got:      sha256:{HEX}\n"
        "hint: The remote content has changed. Verify the new content and update the hash.\n")
