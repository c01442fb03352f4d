"""The airgap scenario on derivations: build in store A (a fetch from a real server on 127.0.0.1 and a
bwrap build), export through a pipe, import into empty stores, realise `--offline` inside a network
namespace with no network at all (`unshare -n`): same output path, nothing built the bundle held, and
what a bundle lacks is listed up front in one error."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.store.builtins import fetchurl_derivation
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store
from tests.fetchserver import FetchServer, serve

pytestmark = [pytest.mark.needs_bwrap,
              pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                                 reason="needs unshare -n (util-linux) as root")]
REPO = Path(__file__).parents[2]
PAYLOAD = b"fetched payload\n" * 1000


@pytest.fixture
def server() -> Iterator[FetchServer]:
    yield from serve()


def _tdx(home: Path, *args: str, netns: bool = False, stdin: bytes | None = None
         ) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TDX_HOME": str(home), "TDX_CONFIG": str(home / "no-config.toml")}
    argv = [sys.executable, "-m", "tdxstore.cli.app", *args]
    if netns:
        argv = ["unshare", "-n", "--", *argv]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, input=stdin, timeout=300)


def _drv_file(tmp: Path, root: StorePath, url: str) -> Path:
    f = tmp / "pkg.py"
    f.write_text(
        "from tdx import derivation, StorePath\n"
        "from tdxstore.store.builtins import fetchurl_derivation\n"
        f"src = fetchurl_derivation({url!r}, {hashlib.sha256(PAYLOAD).hexdigest()!r}, 'payload.txt')\n"
        f"root = StorePath.parse({root.logical!r})\n"
        "default = derivation('pkg', '/bin/sh', ['-c', f'wc -c < {src.out} > $out/size; cp {src.out} $out/copy'],"
        " root=root, inputs=[src])\n")
    return f


def test_export_import_then_offline_in_a_namespace_without_network(tmp_path: Path, busybox_tree: Path,
                                                                   server: FetchServer) -> None:
    a, b, c, d = (tmp_path / n for n in "abcd")  # d: an empty store but for the root
    root = Store.open(a).add_path(busybox_tree, "busybox-root")
    server.files["payload.txt"] = PAYLOAD
    pkg = _drv_file(tmp_path, root, server.url("/file/payload.txt"))
    built = _tdx(a, "realise", str(pkg))
    assert built.returncode == 0, built.stderr
    out = built.stdout.decode().strip()
    dry = _tdx(a, "realise", str(pkg), "--dry-run").stdout.decode().split()
    drv = next(x for x in dry if x.endswith("-pkg.drv"))
    server.stop()  # from here on, nothing answers at the fetch URL either

    # 1. the whole rebuild closure, piped: store B looks the output up, builds nothing, offline
    exported = _tdx(a, "store", "export", drv, "-o", "-")
    assert exported.returncode == 0, exported.stderr
    imported = _tdx(b, "store", "import", "-", stdin=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert out in imported.stdout.decode()
    again = _tdx(b, "realise", "--offline", str(pkg), netns=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.decode().strip() == out and b"nothing to build" in again.stderr
    assert _tdx(b, "store", "verify").returncode == 0

    # 2. only the fetched source (its outputs): store C rebuilds pkg offline, to the same path
    fetched = fetchurl_derivation("http://elsewhere/", hashlib.sha256(PAYLOAD).hexdigest(), "payload.txt").out.logical
    src_bundle = tmp_path / "src.tdx"
    assert _tdx(a, "store", "export", fetched, str(root.logical), "-o", str(src_bundle)).returncode == 0
    assert _tdx(c, "store", "import", str(src_bundle)).returncode == 0
    rebuilt = _tdx(c, "realise", "--offline", str(pkg), netns=True)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.decode().strip() == out
    assert b"building pkg" in rebuilt.stderr and b"payload" not in rebuilt.stderr.split(b"building pkg")[0]
    assert (c / "store" / out.removeprefix("/tdx/store/") / "size").read_text().strip() == str(len(PAYLOAD))

    # 3. a store without the source: one error listing the download, before anything is built
    only_root = tmp_path / "root.tdx"
    assert _tdx(a, "store", "export", str(root.logical), "-o", str(only_root)).returncode == 0
    assert _tdx(d, "store", "import", str(only_root)).returncode == 0
    refused = _tdx(d, "realise", "--offline", str(pkg), netns=True)
    err = refused.stderr.decode()
    assert refused.returncode == 1 and err.count("error: ") == 1, err
    assert "--offline: 1 derivation(s) would need the network" in err and "/file/payload.txt" in err
    assert "building" not in err
    assert _tdx(d, "store", "verify").returncode == 0
