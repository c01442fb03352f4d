"""Lock → build with the network cut: `examples/minimal` pinned by `tdx lock`, built offline by mkosi.

Slow (a full mkosi image build against Debian's real archive; the persistent test store
TDX_TEST_STORE shares the tools tree and the `.deb` files between runs). Proves: mkosi ran under
`unshare --net`, a hook in the image build could not reach a server on 127.0.0.1 that the test can
reach (so every package came from the locked repository, the only source apt had), and a second
build is a lookup.
"""

from __future__ import annotations

import http.server
import os
import shutil
import tarfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.buildhelp import MINIMAL, tdx

TEST_STORE = Path(os.environ.get("TDX_TEST_STORE", "/var/tmp/tdx-test-store"))
PROBE = ("bash -c 'if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then echo reachable; "
         "else echo unreachable; fi' > /etc/tdx-network-probe")


@pytest.fixture
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.slow
def test_locked_minimal_builds_with_the_network_cut(tmp_path: Path,
                                                     server: http.server.ThreadingHTTPServer) -> None:
    for k in ("TDX_DEBIAN_MIRROR", "TDX_DEBIAN_SECURITY_MIRROR", "TDX_DEBIAN_KEYRING"):
        assert k not in os.environ, f"{k} would point the build away from Debian's archive"
    proj = tmp_path / "minimal"
    shutil.copytree(MINIMAL, proj)
    port = server.server_address[1]
    with (proj / "TDXfile").open("a") as f:
        f.write(f"image.run({PROBE.format(port=port)!r})\n")
    assert tdx(TEST_STORE, "lock", "-p", proj).rc == 0
    lock = tomllib.loads((proj / "tdx.lock").read_text())
    pinned = {p["name"]: p for p in lock["debian"]["image"]["package"]}
    assert {"systemd", "linux-image-cloud-amd64", "systemd-boot-efi", "base-files"} <= set(pinned)
    run = tdx(TEST_STORE, "build", proj, "--frozen", "-f", "tar", "-o", tmp_path / "out")
    assert run.rc == 0, str(run)
    drv = next(line.split("log: tdx log ", 1)[1] for line in run.stderr.splitlines() if "log: tdx log " in line)
    log = tdx(TEST_STORE, "log", drv)
    assert log.stdout.splitlines()[0].startswith("$ unshare --net -- /usr/bin/python3 -m mkosi"), log.stdout[:300]
    image = (tmp_path / "out" / "minimal").resolve() / "image.tar"
    with tarfile.open(image) as tf:
        probe = tf.extractfile("etc/tdx-network-probe")
        assert probe is not None and probe.read() == b"unreachable\n"
        names = [n.removeprefix("./") for n in tf.getnames()]
    assert "etc/hello-tdx/message" in names and "usr/lib/systemd/systemd" in names
    # the same server answers the test itself, so "unreachable" was the namespace, not the server
    import urllib.request

    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status == 200
    again = tdx(TEST_STORE, "build", proj, "--frozen", "-f", "tar", "-o", tmp_path / "out")
    assert again.rc == 0 and "up to date" in again.stderr, str(again)
