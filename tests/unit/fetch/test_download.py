"""download(): streamed, verified, atomic; real HTTP server on 127.0.0.1 for every failure mode."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.errors import FetchError, HashMismatchError, UsageError
from tdxstore.fetch.download import check_url, download
from tests.fetchserver import FetchServer, free_port, serve

BODY = os.urandom(300_000)
HEX = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def server() -> Iterator[FetchServer]:
    for srv in serve():
        srv.files["a.bin"] = BODY
        yield srv


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_success_with_progress(server: FetchServer, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "out" / "a.bin"
    got = download(server.url("file/a.bin"), dest, expected_sha256=HEX,
                   progress=lambda d, t: seen.append((d, t)))
    assert got == HEX and dest.read_bytes() == BODY
    assert seen[-1] == (len(BODY), len(BODY))
    assert _leftovers(dest.parent) == ["a.bin"]


def test_redirect_chain(server: FetchServer, tmp_path: Path) -> None:
    got = download(server.url("redirect/4/a.bin"), tmp_path / "a", expected_sha256=HEX)
    assert got == HEX
    assert server.hits["/redirect/1/a.bin"] == 1 and server.hits["/file/a.bin"] == 1


def test_mismatch_leaves_nothing(server: FetchServer, tmp_path: Path) -> None:
    url = server.url("file/a.bin")
    wrong = "0" * 64
    with pytest.raises(HashMismatchError) as info:
        download(url, tmp_path / "a", expected_sha256=wrong)
    assert str(info.value) == (
        f"hash mismatch for {url}\n"
        f"  Expected: sha256:{wrong}\n"
        f"  Got:      sha256:{HEX}\n"
        "The remote content has changed. Verify the new content and update the hash."
    )
    assert info.value.code == "hash-mismatch"
    assert _leftovers(tmp_path) == []


def test_404_names_status_and_url(server: FetchServer, tmp_path: Path) -> None:
    url = server.url("file/missing.bin")
    with pytest.raises(FetchError) as info:
        download(url, tmp_path / "a", expected_sha256=None, retries=0)
    assert info.value.code == "http-error"
    assert "404" in info.value.message and url in info.value.message
    assert server.hits["/file/missing.bin"] == 1  # a 404 is not retried


def test_connection_refused(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/a.bin"
    with pytest.raises(FetchError) as info:
        download(url, tmp_path / "a", expected_sha256=None)
    assert info.value.code == "connection-failed"
    assert "refused" in info.value.message and url in info.value.message


def test_stall_times_out(server: FetchServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as info:
        download(server.url("stall/a.bin"), tmp_path / "a", expected_sha256=HEX, timeout=1.0,
                 retries=1, backoff=0.1)
    assert info.value.code == "timeout"
    assert server.hits["/stall/a.bin"] == 2  # retried once
    assert _leftovers(tmp_path) == []


def test_truncated_body(server: FetchServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as info:
        download(server.url("truncated/a.bin"), tmp_path / "a", expected_sha256=None, retries=2,
                 backoff=0.05)
    assert info.value.code == "truncated"
    assert server.hits["/truncated/a.bin"] == 3
    assert _leftovers(tmp_path) == []


def test_transient_5xx_is_retried(server: FetchServer, tmp_path: Path) -> None:
    got = download(server.url("flaky/2/a.bin"), tmp_path / "a", expected_sha256=HEX, backoff=0.05)
    assert got == HEX and server.hits["/flaky/2/a.bin"] == 3


def test_5xx_gives_up_after_retries(server: FetchServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as info:
        download(server.url("flaky/9/a.bin"), tmp_path / "a", expected_sha256=HEX, retries=2, backoff=0.05)
    assert info.value.code == "http-error" and "503" in info.value.message


def test_file_url(tmp_path: Path) -> None:
    src = tmp_path / "src file.bin"
    src.write_bytes(BODY)
    url = "file://" + str(src).replace(" ", "%20")
    assert download(url, tmp_path / "out" / "x", expected_sha256=HEX) == HEX
    with pytest.raises(FetchError) as info:
        download(f"file://{tmp_path}/nope", tmp_path / "y", expected_sha256=None)
    assert info.value.code == "file-not-found"


def test_existing_dest_untouched_on_failure(server: FetchServer, tmp_path: Path) -> None:
    dest = tmp_path / "a"
    dest.write_bytes(b"old")
    with pytest.raises(HashMismatchError):
        download(server.url("file/a.bin"), dest, expected_sha256="1" * 64)
    assert dest.read_bytes() == b"old"


@pytest.mark.parametrize(("url", "fragment"), [
    ("", "empty"),
    ("example.org/a.tar.gz", "no scheme"),
    ("https://", "no host name"),
    ("https://exa mple.org/a", "whitespace"),
    ("http://[::1/a", "Invalid IPv6"),
    ("http://host:99999/a", "out of range"),
    ("file://host/etc/passwd", "cannot name a host"),
    ("ftp://example.org/a", "unsupported URL scheme 'ftp'"),
    ("git://example.org/a", "unsupported URL scheme 'git'"),
])
def test_bad_urls(url: str, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        check_url(url)
    assert info.value.code == "bad-url"
    assert fragment in info.value.message
    with pytest.raises(UsageError):
        download(url, tmp_path / "a", expected_sha256=None)
    assert _leftovers(tmp_path) == []


def test_proxy_environment_is_honoured(server: FetchServer, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # HTTP_PROXY points at a dead port: the fetch fails unless NO_PROXY exempts 127.0.0.1.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(FetchError):
        download(server.url("file/a.bin"), tmp_path / "a", expected_sha256=HEX, retries=0)
    assert server.hits["/file/a.bin"] == 0
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert download(server.url("file/a.bin"), tmp_path / "a", expected_sha256=HEX) == HEX
