"""fetch()/hash_of() through the store, against a real HTTP server on 127.0.0.1.

Proves: the store path is Nix's flat fixed-output path; a second fetch does no network I/O (server
stopped); mismatch, stall and truncation register nothing; memory stays flat for 200 MB and the
downloaded file is never read back (the kernel's count of bytes read); two
processes fetching the same URL at once download it once; every resolved fetch is recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.builders.fetch import fetch, hash_of, realise_fetch
from tdxstore.errors import FetchError, HashMismatchError, UsageError
from tdxstore.fetch import record as rec
from tdxstore.store.path import make_fixed_output_path
from tdxstore.store.store import Store
from tests.fetchserver import FetchServer, big_digest, free_port, serve

REPO = Path(__file__).resolve().parents[2]
BODY = os.urandom(200_000)
HEX = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def server() -> Iterator[FetchServer]:
    for srv in serve():
        srv.files["go.tar.gz"] = BODY
        yield srv


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    st = Store.open(tmp_path / "tdx")
    yield st
    st.close()


@pytest.fixture(autouse=True)
def _fresh_record() -> Iterator[None]:
    rec.clear()
    yield
    rec.clear()


def _store_names(store: Store) -> list[str]:
    """Valid content paths (a fetch's .drv, its description, is registered before the download)."""
    return sorted(p for p in store.db.all_paths() if not p.endswith(".drv"))


def test_fetch_then_cached_with_server_stopped(server: FetchServer, store: Store) -> None:
    url = server.url("file/go.tar.gz")
    path = fetch(url, sha256=f"sha256:{HEX}", store=store)
    assert path.read_bytes() == BODY
    sp = store.parse(path)
    assert sp == make_fixed_output_path(HEX, "go.tar.gz", recursive=False)
    assert server.hits["/file/go.tar.gz"] == 1
    server.stop()
    again = fetch(url, sha256=HEX, store=store)  # no server: must not touch the network
    assert again == path
    [entry] = rec.recorded()
    assert entry.url == url and entry.integrity == f"sha256:{HEX}" and entry.kind == "fetch"


@pytest.mark.needs_nix
def test_store_path_equals_nix(server: FetchServer, store: Store) -> None:
    path = fetch(server.url("file/go.tar.gz"), sha256=HEX, store=store)
    nix = subprocess.run(["nix-store", "--print-fixed-path", "sha256", HEX, "go.tar.gz"],
                         env={**os.environ, "NIX_STORE_DIR": "/tdx/store"},
                         check=True, capture_output=True, text=True).stdout.strip()
    assert store.parse(path).logical == nix


def test_redirects_and_name(server: FetchServer, store: Store) -> None:
    path = fetch(server.url("redirect/3/go.tar.gz"), sha256=HEX, name="go-1.22.tar.gz", store=store)
    assert path.name.endswith("-go-1.22.tar.gz") and path.read_bytes() == BODY


def test_mismatch_registers_nothing(server: FetchServer, store: Store) -> None:
    url = server.url("file/go.tar.gz")
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(HashMismatchError) as info:
        fetch(url, sha256=wrong, store=store)
    assert str(info.value) == (
        f"hash mismatch for {url}\n  Expected: sha256:{wrong}\n  Got:      sha256:{HEX}\n"
        "The remote content has changed. Verify the new content and update the hash.")
    assert _store_names(store) == []
    assert rec.recorded() == []


def test_stall_registers_nothing(server: FetchServer, store: Store) -> None:
    with pytest.raises(FetchError) as info:
        realise_fetch(store, server.url("stall/go.tar.gz"), HEX, "go.tar.gz", timeout=1.0, retries=0)
    assert info.value.code == "timeout"
    assert _store_names(store) == []
    assert list(store.tmp.iterdir()) == []


def test_truncated_registers_nothing(server: FetchServer, store: Store) -> None:
    with pytest.raises(FetchError) as info:
        fetch(server.url("truncated/go.tar.gz"), sha256=HEX, store=store)
    assert info.value.code == "truncated"
    assert _store_names(store) == []


def test_404_and_refused(server: FetchServer, store: Store) -> None:
    with pytest.raises(FetchError) as info:
        fetch(server.url("file/nope.tar.gz"), sha256=HEX, store=store)
    assert info.value.code == "http-error" and "404" in info.value.message
    with pytest.raises(FetchError) as info:
        fetch(f"http://127.0.0.1:{free_port()}/x.tar.gz", sha256=HEX, store=store)
    assert info.value.code == "connection-failed"


def test_hash_of_url_file_and_prefetch(server: FetchServer, store: Store, tmp_path: Path) -> None:
    url = server.url("file/go.tar.gz")
    assert hash_of(url, store=store) == f"sha256:{HEX}"
    local = tmp_path / "go.tar.gz"
    local.write_bytes(BODY)
    assert hash_of(str(local)) == f"sha256:{HEX}"
    assert hash_of(f"file://{local}") == f"sha256:{HEX}"
    server.stop()  # hash_of put it in the store, as nix-prefetch-url does
    assert fetch(url, sha256=HEX, store=store).read_bytes() == BODY


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"url": "not a url", "sha256": HEX}, "bad-url"),
    ({"url": "example.org/x.tar.gz", "sha256": HEX}, "bad-url"),
    ({"url": "ftp://example.org/x.tar.gz", "sha256": HEX}, "bad-url"),
    ({"url": "https://example.org/x.tar.gz", "sha256": "sha256:1234"}, "bad-hash"),
    ({"url": "https://example.org/x.tar.gz", "sha256": None}, "missing-hash"),
])
def test_bad_input(kwargs: dict[str, str], code: str, store: Store) -> None:
    with pytest.raises(UsageError) as info:
        fetch(kwargs["url"], sha256=kwargs["sha256"], store=store)
    assert info.value.code == code
    if code == "missing-hash":
        assert "tdx fetch --hash https://example.org/x.tar.gz" in str(info.value)


_CHILD = """
import json, sys
from pathlib import Path
from tdxstore.builders.fetch import fetch
from tdxstore.store.store import Store
def rchar():  # bytes this process has read from files by read(2) (socket recv(2) is not counted)
    return int(next(l for l in open("/proc/self/io") if l.startswith("rchar:")).split()[1])
store = Store.open(Path(sys.argv[1]))
before = rchar()
p = fetch(sys.argv[2], sha256=sys.argv[3], store=store)
read = rchar() - before
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would include the forked pytest parent.
hwm = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1])
print(json.dumps({"path": str(p), "maxrss_kib": hwm, "read": read}))
"""


def _child(home: Path, url: str, hex_digest: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(home), url, hex_digest], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_200mb_memory_stays_flat_and_bytes_are_read_once(server: FetchServer, tmp_path: Path) -> None:
    mib = 200
    proc = _child(tmp_path / "tdx", server.url(f"big/{mib}"), big_digest(mib))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert Path(result["path"]).stat().st_size == mib << 20
    peak_mib = result["maxrss_kib"] / 1024
    print(f"peak RSS fetching {mib} MiB: {peak_mib:.1f} MiB")
    assert peak_mib < 100, f"peak RSS {peak_mib:.1f} MiB for a {mib} MiB download"
    # Each byte is read once, from the socket, and hashed as it arrives; verification and registration
    # reuse that hash, so the downloaded file is never read back (before: twice, by the hash check and
    # by the NAR hash of the install).
    ratio = result["read"] / (mib << 20)
    print(f"file bytes read back fetching {mib} MiB: {ratio:.4f}x the file")
    assert ratio < 0.05, ratio


def test_two_processes_download_once(server: FetchServer, tmp_path: Path) -> None:
    home = tmp_path / "tdx"
    Store.open(home).close()
    url = server.url("slow/go.tar.gz")  # 1 s before the body: both clients are inside fetch at once
    procs = [_child(home, url, HEX) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1] for r in results]
    paths = {json.loads(out)["path"] for out, _ in results}
    assert len(paths) == 1
    assert server.hits["/slow/go.tar.gz"] == 1
